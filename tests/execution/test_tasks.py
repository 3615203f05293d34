"""An approved opportunity is filled by the task that approved it, or queued for its fill time."""
import json
from decimal import Decimal as D

import pytest
import redis
from django.conf import settings

from execution.models import Trade
from execution.tasks import execute_approved
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed

from ..factories import approve
from .test_executors import CROSS, T0, cross_venue_market, opportunity, realism

pytestmark = pytest.mark.django_db


def approved(route: str):
    opp = opportunity("arbitrage", CROSS, route=route)
    approve(opp, D("1000"))
    return opp


@pytest.fixture
def desk_queue():
    """The `desk` queue's messages this test added (taken out again: no worker of a later test runs them)."""
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    before = set(client.lrange("desk", 0, -1))

    def added():
        return [message for message in client.lrange("desk", 0, -1) if message not in before]
    yield added
    for message in added():
        client.lrem("desk", 0, message)


def test_with_no_latency_the_approving_task_fills_it_in_place(tmp_path, desk_queue):
    realism("optimistic")
    opp = approved("in-place")
    execute_approved(opportunity_id=opp.pk, feed=cross_venue_market(tmp_path))
    trade = Trade.objects.get(opportunity=opp)
    assert trade.status == Trade.CLOSED and trade.realized_pnl == D("6.772")
    assert desk_queue() == []


def test_a_fill_time_the_feed_has_not_reached_is_queued_for_then(tmp_path, desk_queue):
    realism("realistic", latency_ms=250)
    opp = approved("later")
    cross_venue_market(tmp_path)
    live = ReplayClock.realtime(T0, T0 + 60_000, anchor_wall_ms=0, wall_clock=lambda: 0)  # a live clock standing at T0
    execute_approved(opportunity_id=opp.pk, feed=ReplayFeed(RecordingReader(tmp_path), live))
    assert not Trade.objects.filter(opportunity=opp).exists()
    [message] = [json.loads(m) for m in desk_queue()]
    headers = message["headers"]
    assert headers["task"] == "execution.tasks.execute" and headers["argsrepr"] == f"({opp.pk},)"
    assert headers["eta"] is not None
