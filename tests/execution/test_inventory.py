"""Inventory is money: the venue balances an arbitrage desk holds are valued at market in equity,
drawdown and the stats, so their price risk shows. Numbers to check by hand."""
from decimal import Decimal as D

import pytest
from django.db import connection

from execution import deciding
from execution.models import Balance, EquitySnapshot
from execution.monitor import monitor_positions
from execution.portfolio import current_portfolio, desk_exposure, desk_stats, inventory, take_snapshot

from .recorded import recorded_market
from .test_executors import CROSS, T0, opportunity, realism
from .test_manual_close import at_once

pytestmark = pytest.mark.django_db
CENT = D("0.01")
BTC_SEEDED = D("20000") / D("99.5")  # each venue's BTC, seeded with $20,000 at the first mid, 99.5


def moving_market(tmp_path):
    """The cross-venue books at T0 (a's mid 99.5); a minute later BTC trades at 110 on both
    venues, two minutes later at 90."""
    books = [("a", "BTC/USDT", T0, [("99", "1")], [("100", "1"), ("101", "2"), ("102", "5")]),
             ("b", "BTC/USDT", T0, [("103", "10")], [("104", "10")])]
    for minute, mid in ((1, 110), (2, 90)):
        for venue in ("a", "b"):
            books.append((venue, "BTC/USDT", T0 + minute * 60_000, [(str(mid - D("0.5")), "1")], [(str(mid + D("0.5")), "1")]))
    return recorded_market(tmp_path, venues={"a": ("crypto", "0.001"), "b": ("crypto", "0.002")}, books=books)


def test_inventory_is_revalued_in_equity_when_its_price_moves(tmp_path):
    realism("optimistic")
    feed = moving_market(tmp_path)
    trade = deciding.execute_opportunity(opportunity_id=opportunity("arbitrage", CROSS).pk, feed=feed,
                                         size_usd=D("1000"), decided_ts=T0)
    assert trade.realized_pnl == D("6.772")
    # Seeded: BTC and USDT on a and b, $20,000 each: the starting value is 100,000 cash + 80,000.
    assert Balance.objects.exclude(venue="desk").count() == 4
    point = take_snapshot(ts=T0, feed=feed)
    assert point.starting_value.quantize(CENT) == D("180000.00")
    assert point.inventory_revaluation.quantize(CENT) == 0  # at the seed prices, nothing moved but the trade's P&L
    assert point.equity.quantize(CENT) == D("180006.77")

    # BTC up from 99.5 to 110: 2 × 20,000 / 99.5 = 402.01 BTC gain 10.5 each = +4,221.11 (USDT at par).
    point = take_snapshot(ts=T0 + 60_000, feed=feed.at(T0 + 60_000))
    gain = 2 * BTC_SEEDED * D("10.5")
    assert point.inventory_revaluation.quantize(CENT) == gain.quantize(CENT) == D("4221.11")
    assert point.equity.quantize(CENT) == D("184227.88")
    assert point.inventory_usd.quantize(CENT) == (2 * BTC_SEEDED * 110 + D("40006.772")).quantize(CENT)
    assert desk_exposure()[0].quantize(CENT) == D("184227.88")
    stats = desk_stats()
    assert (stats["starting_value"], stats["inventory_revaluation"], stats["portfolio_value"]) == \
        ("180000.00", "4221.11", "184227.88")
    assert stats["realized_pnl"] == "6.77"

    # BTC down to 90 (the monitor's look marks it, with no position open): −9.5 × 402.01 = −3,819.10,
    # a drawdown of (184,227.88 − 176,187.68) / 184,227.88 = 4.3643 % from the peak.
    assert monitor_positions(feed=feed.at(T0 + 120_000)) == {}
    point = EquitySnapshot.objects.get(minute_ts=T0 + 120_000 - (T0 + 120_000) % 60_000)
    assert point.inventory_revaluation.quantize(CENT) == (2 * BTC_SEEDED * D("-9.5")).quantize(CENT) == D("-3819.10")
    assert point.equity.quantize(CENT) == D("176187.68")
    assert point.peak_equity.quantize(CENT) == D("184227.88") and point.drawdown_pct == D("4.3643")
    held = inventory(current_portfolio())
    assert (point.equity - (point.starting_value + point.realized_pnl + point.unrealized_pnl
                            + point.inventory_revaluation)).quantize(CENT) == 0
    assert (held.market_value - held.seed_value - trade.realized_pnl - held.revaluation).quantize(CENT) == 0


def test_without_inventory_equity_is_cash_and_positions():
    point = take_snapshot(ts=T0)
    assert (point.starting_value, point.inventory_usd, point.inventory_revaluation) == (D("100000"), 0, 0)
    assert point.equity == D("100000") and desk_stats()["inventory_value"] == "0.00"


@pytest.mark.django_db(transaction=True)
def test_two_monitors_taking_a_minute_s_first_point_at_once_leave_one_point_and_both_go_on(tmp_path):
    """Each inserts the minute's first point; the one that comes second finds it written and
    updates it (the latest look wins), without an error and without a second point."""
    if connection.vendor != "postgresql":
        pytest.skip("a unique index waited on across connections: run on PostgreSQL (DATABASE_URL)")
    moving_market(tmp_path)
    take_snapshot(ts=T0 - 60_000)  # an earlier minute: in each round both see an older latest point
    for minute in range(5):
        ts = T0 + minute * 60_000
        outcomes = at_once(tmp_path, *[lambda own_feed: take_snapshot(ts=ts, feed=own_feed)] * 2)
        assert len(outcomes) == 2, "a monitor failed"
        points = EquitySnapshot.objects.filter(minute_ts=ts - ts % 60_000)
        assert points.count() == 1 and points.get().equity == D("100000")
