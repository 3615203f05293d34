"""Desk events reach the subscriptions they should, through the desk's own code paths: the
kill switch saved, a risk limit's first block of the day, a feed venue down and back, a trade
settled. Deliveries are written only once the desk's transaction commits."""
from datetime import datetime, timedelta, timezone
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from decisions.models import Controls, RiskLimits
from decisions.risk import check_trade_approval, record_outcome
from execution import portfolio as book_keeping
from execution.models import Trade
from notifications.models import Channel, Delivery, FeedOutage, RiskHalt, Subscription
from scanners.feeds.base import DOWN, OK, FeedStatus
from scanners.services import record_feed_status

from ..factories import opportunity, trade

pytestmark = pytest.mark.django_db
NOON = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)


def subscribe(name: str, event: str, **thresholds) -> Subscription:
    channel = Channel.objects.get_or_create(name=name, defaults={"url": f"json://127.0.0.1:9/{name}"})[0]
    return Subscription.objects.create(channel=channel, event=event, **thresholds)


def delivered(subscription: Subscription) -> list[Delivery]:
    return list(Delivery.objects.filter(subscription=subscription).order_by("id"))


@pytest.fixture
def every_event():
    """One channel per event kind, so a test sees which fired and which did not."""
    return {event: subscribe(event, event) for event, _ in Subscription.EVENTS}


def fired() -> set[str]:
    return set(Delivery.objects.values_list("subscription__event", flat=True))


def test_the_kill_switch_turned_on_and_off_notifies_its_subscribers_with_who(every_event, django_capture_on_commit_callbacks):
    operator = get_user_model().objects.create_user("operator")
    controls = Controls.get_solo()
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        with transaction.atomic():
            controls.kill_switch = True
            controls.save(changed_by=operator)
            assert not Delivery.objects.exists()  # not before the commit
    assert callbacks and fired() == {Subscription.KILL_SWITCH}
    [on] = delivered(every_event[Subscription.KILL_SWITCH])
    assert on.title == "Kill switch ON: the desk opens no new trades" and on.data == {"on": True, "by": "operator"}
    assert on.status == Delivery.QUEUED and on.channel.name == Subscription.KILL_SWITCH

    with django_capture_on_commit_callbacks(execute=True):
        controls.auto_execute = not controls.auto_execute  # another switch: not the kill switch's event
        controls.save(changed_by=operator)
    assert len(delivered(every_event[Subscription.KILL_SWITCH])) == 1
    with django_capture_on_commit_callbacks(execute=True):
        controls.kill_switch = False
        controls.save(changed_by=operator)
    assert [d.data["on"] for d in delivered(every_event[Subscription.KILL_SWITCH])] == [True, False]


def test_a_rolled_back_kill_switch_is_never_announced(every_event, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RuntimeError), transaction.atomic():
            controls = Controls.get_solo()
            controls.kill_switch = True
            controls.save()
            raise RuntimeError("rolled back")
    assert not Delivery.objects.exists()


def test_a_risk_halt_is_announced_at_its_first_block_of_the_day_only(every_event, django_capture_on_commit_callbacks):
    RiskLimits.objects.create(max_daily_loss=D("100"), max_consecutive_losses=10)
    record_outcome(realized_pnl=D("-60"), at=NOON)
    record_outcome(realized_pnl=D("-50"), at=NOON)
    with django_capture_on_commit_callbacks(execute=True):
        blocked = check_trade_approval("BTC/USD", D("1000"), "buy", D("100000"), now=NOON)
    assert blocked.reasons == ["DAILY_LOSS"]
    assert fired() == {Subscription.RISK_HALT}
    [halt] = delivered(every_event[Subscription.RISK_HALT])
    assert halt.title == "Risk halt: daily loss limit reached"
    assert halt.data["reason"] == "DAILY_LOSS" and halt.data["day_loss"] == "110.00000000" and halt.data["limit"] == "100.00"
    with django_capture_on_commit_callbacks(execute=True):
        assert check_trade_approval("BTC/USD", D("1000"), "buy", D("100000"), now=NOON).reasons == ["DAILY_LOSS"]
    assert len(delivered(every_event[Subscription.RISK_HALT])) == 1
    assert list(RiskHalt.objects.values_list("reason", flat=True)) == ["DAILY_LOSS"]


def test_a_block_by_a_limit_that_is_no_halt_is_not_announced(every_event, django_capture_on_commit_callbacks):
    RiskLimits.objects.create(max_trades_per_day=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert check_trade_approval("BTC/USD", D("1000"), "buy", D("100000"), now=NOON).approved
        assert check_trade_approval("BTC/USD", D("1000"), "buy", D("100000"), now=NOON).reasons == ["TRADE_COUNT"]
    assert not Delivery.objects.exists()


def test_a_loss_streak_halt_says_the_streak_and_the_cooldown(every_event, django_capture_on_commit_callbacks):
    RiskLimits.objects.create(max_consecutive_losses=2, max_daily_loss=D("1000"), cooldown_minutes=30)
    record_outcome(realized_pnl=D("-1"), at=NOON)
    record_outcome(realized_pnl=D("-1"), at=NOON)
    with django_capture_on_commit_callbacks(execute=True):
        check_trade_approval("BTC/USD", D("1000"), "buy", D("100000"), now=NOON + timedelta(minutes=1))
    [halt] = delivered(every_event[Subscription.RISK_HALT])
    assert halt.data["reason"] == "LOSS_STREAK" and halt.data["loss_streak"] == 2
    assert "cooling down until 2026-03-03 12:30 UTC" in halt.body


def test_a_trade_closed_above_a_size_or_a_p_and_l_fires_only_those_subscriptions(django_capture_on_commit_callbacks):
    by_size = subscribe("big trades", Subscription.TRADE_CLOSED, min_size_usd=D("500"))
    by_pnl = subscribe("big moves", Subscription.TRADE_CLOSED, min_abs_pnl_usd=D("50"))
    every = subscribe("every close", Subscription.TRADE_CLOSED)
    big = trade(opportunity(route="big", symbol="BTC/USDT"), size_usd=D("1000"), venues=["binance", "kraken"])
    small_loss = trade(opportunity(route="small"), size_usd=D("100"))
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            book_keeping.settle(trade=big, realized_pnl=D("6.77"), closed_ts=big.opened_ts + 1000)
        with transaction.atomic():
            book_keeping.settle(trade=small_loss, realized_pnl=D("-75"), closed_ts=small_loss.opened_ts + 1000)
    assert [d.data["trade"] for d in delivered(by_size)] == [big.pk]
    assert [d.data["trade"] for d in delivered(by_pnl)] == [small_loss.pk]
    assert [d.data["trade"] for d in delivered(every)] == [big.pk, small_loss.pk]
    [size_notice] = delivered(by_size)
    assert size_notice.title == "Trade closed: arbitrage BTC/USDT $6.77"
    assert "size $1,000.00" in size_notice.body and D(size_notice.data["size_usd"]) == D("1000")
    assert Trade.objects.get(pk=big.pk).status == Trade.CLOSED


def test_a_subscription_added_while_the_desk_runs_hears_the_next_close(django_capture_on_commit_callbacks):
    """Trade closes skip the subscriptions' query while nobody listens; a channel subscribed (or
    switched off) in admin is a new configuration version, heard from the next close on."""
    first, second, third = (trade(opportunity(route=f"r{n}"), size_usd=D("100")) for n in range(3))
    with django_capture_on_commit_callbacks(execute=True):
        book_keeping.settle(trade=first, realized_pnl=D("1"), closed_ts=first.opened_ts + 1000)
    assert not Delivery.objects.exists()
    every = subscribe("every close", Subscription.TRADE_CLOSED)
    with django_capture_on_commit_callbacks(execute=True):
        book_keeping.settle(trade=second, realized_pnl=D("2"), closed_ts=second.opened_ts + 1000)
    assert [d.data["trade"] for d in delivered(every)] == [second.pk]
    every.channel.active = False
    every.channel.save()
    with django_capture_on_commit_callbacks(execute=True):
        book_keeping.settle(trade=third, realized_pnl=D("3"), closed_ts=third.opened_ts + 1000)
    assert [d.data["trade"] for d in delivered(every)] == [second.pk]


def test_a_trade_opened_or_rejected_is_no_close(every_event, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        trade(opportunity(route="open"), size_usd=D("1000"))
        trade(opportunity(route="rejected"), status=Trade.REJECTED, size_usd=D("1000"))
    assert not Delivery.objects.exists()


def test_a_feed_venue_down_then_back_after_more_than_n_seconds(django_capture_on_commit_callbacks):
    down = subscribe("down", Subscription.FEED_DOWN)
    back_after_60 = subscribe("back60", Subscription.FEED_BACK, min_outage_s=60)
    back_after_300 = subscribe("back300", Subscription.FEED_BACK, min_outage_s=300)
    with django_capture_on_commit_callbacks(execute=True):
        record_feed_status(feed_name="ccxt", statuses=[FeedStatus("binance", state=DOWN, last_error="RequestTimeout"),
                                                       FeedStatus("kraken", state=OK)])
        record_feed_status(feed_name="ccxt", statuses=[FeedStatus("binance", state=DOWN, last_error="RequestTimeout"),
                                                       FeedStatus("kraken", state=OK)])  # still down: said once
    [notice] = delivered(down)
    assert notice.title == "Feed down: ccxt binance" and notice.data["error"] == "RequestTimeout"
    outage = FeedOutage.objects.get(feed="ccxt", venue="binance", ended_at__isnull=True)
    FeedOutage.objects.filter(pk=outage.pk).update(started_at=outage.started_at - timedelta(seconds=120))  # 2 minutes ago
    with django_capture_on_commit_callbacks(execute=True):
        record_feed_status(feed_name="ccxt", statuses=[FeedStatus("binance", state=OK), FeedStatus("kraken", state=OK)])
    [back] = delivered(back_after_60)
    assert delivered(back_after_300) == [] and len(delivered(down)) == 1
    assert 120 <= back.data["outage_s"] < 180 and back.title.startswith("Feed back: ccxt binance after 12")
    assert FeedOutage.objects.get(pk=outage.pk).ended_at is not None
