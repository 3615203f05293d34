"""The risk day's boundary in the limits' time zone, and a feed that stops updating.

tests/decisions/test_risk.py checks approvals either side of New York's midnight; here
the same boundary for UTC, a half-hour zone and a daylight-saving day, for approvals,
realized outcomes and the usage the API shows, and the millisecond clock they are fed.
The stale cases follow one feed that stops: the scan stores nothing from it, what was
stored before it stopped is not approved, and open positions are neither closed on its
last price nor settled on it (tests/decisions/test_pipeline.py and
tests/execution/test_executors.py have the single-step versions).
"""
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal as D
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, strategies as st

from decisions.models import Decision, RiskDay, RiskLimits
from execution.deciding import decide_opportunity
from decisions.risk import check_trade_approval, record_outcome, risk_usage
from execution import deciding as executors
from execution.models import Position, Trade
from execution.monitor import monitor_positions
from execution.portfolio import cash_account, current_portfolio
from scanners.models import Opportunity, ScanRun
from scanners.services import run_scan
from trifecta_site.clock import ms_to_datetime

from ..decisions.test_pipeline import auto_execute
from ..execution.recorded import recorded_market
from ..execution.test_executors import forex_market, open_forex, realism
from ..factories import T0, opportunity

pytestmark = pytest.mark.django_db
PORTFOLIO = D("100000")


def local(zone: str, day: date, hour: int, minute: int, second: int, micro: int) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, second, micro, tzinfo=ZoneInfo(zone)).astimezone(timezone.utc)


BOUNDARIES = [
    ("UTC", date(2026, 3, 3)),
    ("America/New_York", date(2026, 3, 3)),
    ("America/New_York", date(2026, 3, 8)),  # spring forward: a 23-hour day
    ("America/New_York", date(2026, 10, 31)),  # the night before falling back
    ("Asia/Kolkata", date(2026, 3, 3)),  # UTC+5:30: midnight is not on a UTC hour
]


@pytest.mark.parametrize("zone, day", BOUNDARIES)
def test_a_trade_a_tenth_of_a_second_either_side_of_midnight_counts_on_its_own_day(zone, day):
    RiskLimits.objects.create(day_timezone=zone, max_trades_per_day=1, max_daily_loss=D("15"))
    late, early = local(zone, day, 23, 59, 59, 900_000), local(zone, day + timedelta(days=1), 0, 0, 0, 100_000)
    assert early - late == timedelta(milliseconds=200)
    first = check_trade_approval("BTC/USD", D("1000"), "buy", PORTFOLIO, now=late)
    second = check_trade_approval("BTC/USD", D("1000"), "buy", PORTFOLIO, now=early)
    assert (first.approved, first.day) == (True, day.isoformat())
    assert (second.approved, second.day) == (True, (day + timedelta(days=1)).isoformat())  # one a day: a new day's slot
    record_outcome(realized_pnl=D("-10"), at=late)
    record_outcome(realized_pnl=D("-10"), at=early)
    days = {row.date: (row.trades, row.realized_loss) for row in RiskDay.objects.all()}
    assert days == {day: (1, D("10")), day + timedelta(days=1): (1, D("10"))}  # neither day reached the 15 budget
    usage = risk_usage(portfolio_value=PORTFOLIO, now=early)
    assert usage["day"] == (day + timedelta(days=1)).isoformat() and usage["checks"]["daily_loss"]["used"] == "10.00000000"
    assert check_trade_approval("BTC/USD", D("1000"), "buy", PORTFOLIO, now=early).reasons == ["TRADE_COUNT"]


@given(ms=st.integers(min_value=0, max_value=4_102_444_800_000))  # 1970 to 2100
def test_the_millisecond_clock_becomes_the_same_instant_exactly(ms):
    """Decisions and closes reach the risk day through ms_to_datetime: a millisecond off at 23:59:59.999 is a day off."""
    assert ms_to_datetime(ms) == datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(milliseconds=ms)


# --- a feed that stops ----------------------------------------------------------------------

MAX_AGE_MS = 5000


@pytest.fixture
def stopping_market(tmp_path):
    """Two venues quoting BTC/USDT 2 % apart, then nothing more after T0 + 1 s."""
    return recorded_market(tmp_path, venues={"a": ("crypto", "0.001"), "b": ("crypto", "0.001")}, quotes=[
        ("a", "BTC/USDT", T0, "99.9", "100"), ("b", "BTC/USDT", T0, "102", "102.1"),
        ("a", "BTC/USDT", T0 + 1000, "99.9", "100"), ("b", "BTC/USDT", T0 + 1000, "102", "102.1"),
    ])


def test_a_stopped_feed_gives_no_opportunity_once_its_quotes_pass_the_max_age(stopping_market):
    feed = stopping_market.at(T0 + 1000 + MAX_AGE_MS)  # exactly the max age: still fresh
    assert run_scan(kind="arbitrage", feed=feed, decide=False)
    stored = Opportunity.objects.count()
    assert stored > 0
    for late in (1, 60_000, 3_600_000):
        run_scan(kind="arbitrage", feed=stopping_market.at(T0 + 1000 + MAX_AGE_MS + late), decide=False)
    assert Opportunity.objects.count() == stored
    later = ScanRun.objects.order_by("id")[1:]
    assert [run.opportunities_found for run in later] == [0, 0, 0]
    assert all(run.skipped.get("stale_quote", 0) > 0 for run in later), [run.skipped for run in later]


def test_what_was_found_before_the_feed_stopped_is_not_approved_after(stopping_market):
    auto_execute(True)
    run_scan(kind="arbitrage", feed=stopping_market.at(T0 + 1000), decide=False)
    found = list(Opportunity.objects.all())
    assert found
    feed = stopping_market.at(T0 + 1000 + MAX_AGE_MS + 1)  # the decide task runs late, the feed has said nothing since
    for opp in found:
        assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "skip"
    governor = Decision.objects.filter(layer="governor")
    assert {tuple(d.reasons) for d in governor} == {("STALE_DATA",)}
    assert all(d.figures["data_age_ms"] > MAX_AGE_MS for d in governor)
    assert not RiskDay.objects.filter(trades__gt=0).exists() and not Trade.objects.exists()


def test_an_open_forex_position_waits_out_a_stopped_feed_even_past_its_maximum_holding_time(tmp_path):
    realism("optimistic", max_holding_minutes=1)
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 1000, "1.0950", "1.0952"),  # through the stop: once fresh
                                          ("fx", "EUR/USD", T0 + 600_000, "1.1010", "1.1012")])
    trade = open_forex(feed)
    for now in (T0 + 1000 + MAX_AGE_MS + 1, T0 + 120_000, T0 + 599_999):  # stale stop price, then past max hold, still stale
        assert monitor_positions(feed=feed.at(now)) == {"stale": 1}
    position = Position.objects.get(trade=trade)
    assert position.status == Position.OPEN and position.checked_ts == T0
    assert monitor_positions(feed=feed.at(T0 + 600_000)) == {"max_hold": 1}  # the feed is back: closed at its fresh price
    position.refresh_from_db()
    assert position.exit_price == D("1.1010") and position.closed_ts == T0 + 600_000


def test_a_binary_waits_out_a_stopped_feed_and_is_refunded_when_its_data_never_comes_back(tmp_path):
    """The feed stops 10 s before expiry: 110 may not have been the last price before it, so
    the stake is neither settled on it nor voided at once; with no data a maximum holding
    time (1 min) after expiry, the stake is refunded as void."""
    realism("optimistic", max_holding_minutes=1)
    feed = recorded_market(tmp_path, venues={"b": ("crypto", "0.001")}, quotes=[
        ("b", "BTC/USDT", T0, "100.9", "101.1"),
        ("b", "BTC/USDT", T0 + 50_000, "109.9", "110.1"),  # a winning price, but the data stops before expiry
    ])
    opp = opportunity("binary", {"symbol": "BTC/USDT", "venue": "b", "direction": "CALL", "expiry_s": "60",
                                 "probability": "0.8", "payout": "0.85", "entry_price": "101"}, direction="CALL")
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("10"), decided_ts=T0)
    assert monitor_positions(feed=feed.at(T0 + 119_999)) == {"open": 1}
    assert monitor_positions(feed=feed.at(T0 + 120_000)) == {"void": 1}
    position = Position.objects.get(trade=trade)
    assert position.realized_pnl == 0 and position.exit_price == D("101")
    assert cash_account(current_portfolio()).total == D("100000")  # the stake came back whole
