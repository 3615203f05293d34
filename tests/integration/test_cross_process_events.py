"""An event published in a worker process reaches WebSocket clients of a web process,
through the real channel layer (Redis pub/sub), with 200 clients connected at once."""
import asyncio
import json

import pytest
import redis
import websockets
from django.conf import settings
from django.contrib.auth import get_user_model

from scanners.models import FeedState
from scanners.tasks import poll_feeds
from tests.waiting import wait_for
from trifecta_site.events import group_name

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

CLIENTS = 200


def web_subscribed_to(kind: str):
    """Whether the web process's channel layer holds a Redis subscription for `kind`'s group
    (its clients' subscriptions have landed on the server: an event published now reaches them)."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    return lambda: client.pubsub_channels(f"*{group_name(kind)}*")


def session_cookie(client) -> str:
    user = get_user_model().objects.create_user("watcher", password="pw-for-tests-1")
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


async def gather_events(port: int, cookie: str, clients: int, trigger) -> list[dict]:
    url = f"ws://127.0.0.1:{port}/ws/stream/?kinds=feed"
    headers = {"Cookie": cookie, "Origin": f"http://127.0.0.1:{port}"}

    async def open_client():
        socket = await websockets.connect(url, additional_headers=headers, open_timeout=20)
        subscribed = json.loads(await asyncio.wait_for(socket.recv(), 20))
        assert subscribed["type"] == "subscribed"
        return socket

    sockets = await asyncio.gather(*(open_client() for _ in range(clients)))
    try:
        await asyncio.to_thread(wait_for, web_subscribed_to("feed"), 10, "the web process subscribed to feed events")
        await asyncio.to_thread(trigger)
        received = await asyncio.gather(*(asyncio.wait_for(s.recv(), 30) for s in sockets))
    finally:
        await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    return [json.loads(message) for message in received]


def test_feed_event_from_worker_reaches_200_clients_on_the_web_process(desk, client):
    cookie = session_cookie(client)
    events = asyncio.run(gather_events(desk["port"], cookie, CLIENTS, poll_feeds.delay))
    assert len(events) == CLIENTS
    assert all(event["type"] == "feed" for event in events)
    assert {event["data"]["venue"] for event in events} <= {"binance", "kraken"}
    assert all(event["data"]["state"] == "ok" for event in events), events[0]
    assert set(FeedState.objects.values_list("venue", "state")) == {("binance", "ok"), ("kraken", "ok")}


def test_foreign_origin_is_refused_by_the_web_process(desk, client):
    cookie = session_cookie(client)

    async def attempt():
        url = f"ws://127.0.0.1:{desk['port']}/ws/stream/"
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url, additional_headers={"Cookie": cookie, "Origin": "http://evil.example"})
        return refused.value.response.status_code

    assert asyncio.run(attempt()) == 403
