"""The WebSocket stream in-process: auth, origin, subscriptions, events through the real channel layer."""
import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token

from trifecta_site import events
from trifecta_site.asgi import application

pytestmark = pytest.mark.django_db(transaction=True)

ORIGIN = (b"origin", b"http://localhost")


@pytest.fixture
def user():
    return get_user_model().objects.create_user("operator", password="pw-for-tests-1")


@pytest.fixture
def session_cookie(client, user):
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}".encode()


def communicator(path="/ws/stream/", headers=()):
    return WebsocketCommunicator(application, path, headers=[ORIGIN, *headers])


async def connect_and_settle(comm):
    connected, code = await comm.connect(timeout=5)  # the token check and axes' lookup: over 1 s on a busy 2-core box
    if connected:
        subscribed = await comm.receive_json_from(timeout=2)
        assert subscribed["type"] == "subscribed"
        return subscribed["data"]["kinds"]
    return code


def test_anonymous_connection_is_closed_with_4401():
    async def scenario():
        comm = communicator()
        connected, code = await comm.connect()
        await comm.disconnect()
        return connected, code

    assert async_to_sync(scenario)() == (False, 4401)


def test_foreign_origin_is_refused(session_cookie):
    async def scenario():
        comm = WebsocketCommunicator(
            application, "/ws/stream/", headers=[(b"origin", b"http://evil.example"), (b"cookie", session_cookie)]
        )
        connected, _ = await comm.connect()
        await comm.disconnect()
        return connected

    assert async_to_sync(scenario)() is False


def test_session_user_gets_all_kinds_by_default(session_cookie):
    async def scenario():
        comm = communicator(headers=[(b"cookie", session_cookie)])
        kinds = await connect_and_settle(comm)
        await comm.disconnect()
        return kinds

    assert async_to_sync(scenario)() == sorted(events.KINDS)


def test_token_in_query_or_header_authenticates(user):
    token = Token.objects.create(user=user)

    async def scenario():
        results = []
        for comm in (
            communicator(f"/ws/stream/?token={token.key}&kinds=feed"),
            communicator(headers=[(b"authorization", f"Token {token.key}".encode())]),
            communicator("/ws/stream/?token=wrong"),
        ):
            results.append(await connect_and_settle(comm))
            await comm.disconnect()
        return results

    assert async_to_sync(scenario)() == [["feed"], sorted(events.KINDS), 4401]


def test_published_event_reaches_only_subscribers_of_its_kind(session_cookie):
    async def scenario():
        feed_client = communicator("/ws/stream/?kinds=feed", headers=[(b"cookie", session_cookie)])
        trade_client = communicator("/ws/stream/?kinds=trade", headers=[(b"cookie", session_cookie)])
        await connect_and_settle(feed_client)
        await connect_and_settle(trade_client)
        await asyncio.sleep(0.2)  # let the pub/sub subscriptions land on the server
        delivered = await sync_to_async(events.publish)("feed", {"venue": "binance", "state": "degraded"})
        assert delivered
        received = await feed_client.receive_json_from(timeout=3)
        assert await trade_client.receive_nothing(timeout=0.3)
        await feed_client.disconnect()
        await trade_client.disconnect()
        return received

    event = async_to_sync(scenario)()
    assert event["type"] == "feed"
    assert event["data"] == {"venue": "binance", "state": "degraded"}
    assert isinstance(event["ts"], int)


def test_a_burst_of_events_reaches_a_subscriber_whole_and_in_order(session_cookie):
    """The sender batches what queues up into one round trip: none lost, none reordered."""
    async def scenario():
        feed_client = communicator("/ws/stream/?kinds=feed", headers=[(b"cookie", session_cookie)])
        await connect_and_settle(feed_client)
        await asyncio.sleep(0.2)

        def burst():
            for n in range(200):
                assert events.publish("feed", {"venue": "binance", "n": n})
            return events.flush()
        assert await sync_to_async(burst)() == 0
        received = [await feed_client.receive_json_from(timeout=3) for _ in range(200)]
        await feed_client.disconnect()
        return received

    assert [event["data"]["n"] for event in async_to_sync(scenario)()] == list(range(200))


def test_subscribe_messages_change_kinds_and_bad_ones_get_an_error(session_cookie):
    async def scenario():
        comm = communicator("/ws/stream/?kinds=feed", headers=[(b"cookie", session_cookie)])
        await connect_and_settle(comm)
        await comm.send_json_to({"action": "subscribe", "kinds": ["trade", "nonsense"]})
        error = await comm.receive_json_from(timeout=2)
        now = await comm.receive_json_from(timeout=2)
        await comm.send_json_to({"action": "unsubscribe", "kinds": ["feed"]})
        after = await comm.receive_json_from(timeout=2)
        await comm.send_json_to({"hello": 1})
        complaint = await comm.receive_json_from(timeout=2)
        await comm.disconnect()
        return error, now, after, complaint

    error, now, after, complaint = async_to_sync(scenario)()
    assert error["type"] == "error" and error["data"]["unknown_kinds"] == ["nonsense"]
    assert now["data"]["kinds"] == ["feed", "trade"]
    assert after["data"]["kinds"] == ["trade"]
    assert complaint["type"] == "error"


def test_publish_refuses_unknown_kinds():
    with pytest.raises(ValueError):
        events.publish("gossip", {})


def test_publish_survives_an_unreachable_channel_layer(settings):
    from channels.layers import channel_layers

    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.pubsub.RedisPubSubChannelLayer",
            "CONFIG": {"hosts": [{"address": "redis://127.0.0.1:1/0", "socket_connect_timeout": 0.5}]},
        }
    }
    channel_layers.backends.clear()
    try:
        assert events.publish("feed", {"venue": "x"})  # queued: the caller never waits for the layer
        assert events.flush() == 1
    finally:
        channel_layers.backends.clear()
