"""Binaries settle as a broker would, with numbers to check by hand: entry on the quote in force at
fill time (refused when stale), settlement on the last price at or before expiry however old,
void only where the data ends before expiry, a tie refunds; the win rate counts decided trades."""
from decimal import Decimal as D

import pytest

from execution import deciding
from execution.models import Position, Trade
from execution.monitor import close_remaining, monitor_positions
from execution.portfolio import cash_account, current_portfolio, desk_stats

from .recorded import recorded_market
from .test_executors import T0, opportunity, realism

pytestmark = pytest.mark.django_db
BINARY = {"symbol": "BTC/USDT", "venue": "b", "direction": "CALL", "expiry_s": "60", "probability": "0.8",
          "payout": "0.85", "entry_price": "101"}
STAKE = D("10")


def market(tmp_path, quotes, name="m"):
    return recorded_market(tmp_path / name, venues={"b": ("crypto", "0.001")},
                           quotes=[("b", "BTC/USDT", ts, bid, ask) for ts, bid, ask in quotes], at=T0)


def stake(feed, *, direction="CALL", decided_ts=T0, route="r") -> Trade:
    opp = opportunity("binary", {**BINARY, "direction": direction}, direction=direction, route=route)
    return deciding.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=STAKE, decided_ts=decided_ts)


def test_settles_on_the_last_price_before_expiry_even_when_it_is_older_than_the_max_age(tmp_path):
    """Entry mid 101 at T0; the last price before expiry (T0 + 60 s) is 110 at T0 + 50 s, 10 s
    old at expiry (max age 5 s), and the data goes on (90 at T0 + 70 s, after expiry: not used):
    a CALL wins 10 × 0.85 = 8.50."""
    realism("optimistic", max_quote_age_ms=5000)
    feed = market(tmp_path, [(T0, "100.9", "101.1"), (T0 + 50_000, "109.9", "110.1"), (T0 + 70_000, "89.9", "90.1")])
    trade = stake(feed)
    position = Position.objects.get(trade=trade)
    assert (position.entry_price, position.expiry_ts) == (D("101"), T0 + 60_000)
    assert monitor_positions(feed=feed.at(T0 + 60_000)) == {"open": 1}  # nothing seen at or after expiry yet
    assert monitor_positions(feed=feed.at(T0 + 70_000)) == {"win": 1}
    position.refresh_from_db()
    assert (position.exit_price, position.realized_pnl, position.closed_ts) == (D("110"), D("8.5"), T0 + 60_000)
    assert cash_account(current_portfolio()).total == D("100000") + D("8.5")


def test_a_price_exactly_at_expiry_settles_and_a_later_one_does_not(tmp_path):
    """PUT at 101: 100 at T0 + 60 s (expiry) settles it as a win; 120 at T0 + 61 s is too late to count."""
    realism("optimistic")
    feed = market(tmp_path, [(T0, "100.9", "101.1"), (T0 + 60_000, "99.9", "100.1"), (T0 + 61_000, "119.9", "120.1")])
    trade = stake(feed, direction="PUT")
    assert monitor_positions(feed=feed.at(T0 + 61_000)) == {"win": 1}
    assert Position.objects.get(trade=trade).exit_price == D("100")


def test_void_only_where_the_data_ends_before_expiry(tmp_path):
    """The recording ends at T0 + 50 s, before the expiry at T0 + 60 s: nothing says 110 was the last
    price before expiry, so the stake comes back whole, void."""
    realism("optimistic")
    feed = market(tmp_path, [(T0, "100.9", "101.1"), (T0 + 50_000, "109.9", "110.1")])
    trade = stake(feed)
    assert monitor_positions(feed=feed.at(T0 + 120_000)) == {"open": 1}  # the data may still come
    assert close_remaining(feed=feed, now=T0 + 120_000) == {"void": 1}  # the data has ended: void
    position = Position.objects.get(trade=trade)
    assert (position.realized_pnl, position.exit_price) == (D("0"), D("101"))
    assert cash_account(current_portfolio()).total == D("100000")
    assert cash_account(current_portfolio()).reserved == 0


def test_a_tie_refunds_the_stake(tmp_path):
    realism("optimistic")
    feed = market(tmp_path, [(T0, "100.9", "101.1"), (T0 + 59_000, "100.8", "101.2"), (T0 + 61_000, "80", "80.2")])
    trade = stake(feed)
    assert monitor_positions(feed=feed.at(T0 + 61_000)) == {"tie": 1}
    position = Position.objects.get(trade=trade)
    assert (position.exit_price, position.realized_pnl) == (D("101"), D("0"))
    assert cash_account(current_portfolio()).total == D("100000")


def test_settles_on_a_bar_close_before_expiry_with_sparse_bars(tmp_path):
    """Second bars only where there were trades (as coinbase-1s-2016-10): entry on the bar closed
    at T0 (close 101), last bar before expiry closes at T0 + 30 s (close 99), the next at T0 + 90 s:
    a CALL loses its 10 stake although the 99 was 30 s old at expiry."""
    realism("optimistic")
    feed = recorded_market(tmp_path, venues={"b": ("crypto", "0.001")}, at=T0, bars=[
        ("b", "BTC/USDT", "1s", T0 - 1000, "101", "101", "101", "101"),
        ("b", "BTC/USDT", "1s", T0 + 29_000, "99", "99", "99", "99"),
        ("b", "BTC/USDT", "1s", T0 + 89_000, "120", "120", "120", "120"),
    ])
    trade = stake(feed)
    assert trade.status == Trade.OPEN and trade.fills.get().evidence["quote_age_ms"] == 0
    assert monitor_positions(feed=feed.at(T0 + 90_000)) == {"loss": 1}
    position = Position.objects.get(trade=trade)
    assert (position.entry_price, position.exit_price, position.realized_pnl) == (D("101"), D("99"), D("-10"))


def test_an_entry_on_a_stale_quote_is_refused(tmp_path):
    """The only quote is from T0 − 10 s; the fill at T0 + 250 ms would meet a price 10,250 ms old
    (max 5,000): refused, nothing reserved."""
    realism("realistic", latency_ms=250, max_quote_age_ms=5000)
    feed = market(tmp_path, [(T0 - 10_000, "100.9", "101.1"), (T0 + 70_000, "100.9", "101.1")])
    trade = stake(feed)
    assert trade.status == Trade.REJECTED and trade.reject_reason == "STALE_PRICE"
    assert trade.edge["quote_age_ms"] == 10_250 and trade.edge["max_age_ms"] == 5000
    assert not Position.objects.exists() and cash_account(current_portfolio()).reserved == 0


def test_an_entry_meets_the_quote_in_force_at_fill_time_and_records_its_age(tmp_path):
    """Decided at T0, filled at T0 + 250: the quote of T0 − 1,000 (mid 101) is in force, 1,250 ms
    old; the quote of T0 + 300 (mid 150) comes after the fill and is never met."""
    realism("realistic", latency_ms=250, max_quote_age_ms=5000)
    feed = market(tmp_path, [(T0 - 1000, "100.9", "101.1"), (T0 + 300, "149.9", "150.1"), (T0 + 70_000, "1", "2")])
    trade = stake(feed)
    position = Position.objects.get(trade=trade)
    assert position.entry_price == D("101") and position.opened_ts == T0 + 250
    assert trade.fills.get().evidence["quote_age_ms"] == 1250


def test_the_win_rate_counts_wins_over_decided_binaries_with_ties_and_voids_apart(tmp_path):
    """Four binaries: a win (+8.50), a loss (−10), a tie (0), a void (0): win rate 1 / 2, not 1 / 4."""
    realism("optimistic")
    outcomes = {"win": "110", "loss": "90", "tie": "101"}
    for n, (name, settle) in enumerate(outcomes.items()):
        feed = market(tmp_path, [(T0, "100.9", "101.1"), (T0 + 59_000, str(D(settle) - D("0.1")), str(D(settle) + D("0.1"))),
                                 (T0 + 61_000, "50", "50.2")], name=name)
        stake(feed, route=name)
        monitor_positions(feed=feed.at(T0 + 61_000))
    ended = market(tmp_path, [(T0, "100.9", "101.1")], name="void")
    stake(ended, route="void")
    close_remaining(feed=ended, now=T0 + 61_000)
    assert sorted(Position.objects.values_list("close_reason", flat=True)) == ["loss", "tie", "void", "win"]
    stats = desk_stats()
    binary = stats["per_kind"]["binary"]
    assert (binary["trades"], binary["wins"], binary["losses"], binary["ties"], binary["voids"]) == (4, 1, 1, 1, 1)
    assert binary["decided"] == 2 and binary["win_rate"] == "0.5000"
    assert (stats["wins"], stats["losses"], stats["ties"], stats["voids"], stats["win_rate"]) == (1, 1, 1, 1, "0.5000")
    assert binary["realized_pnl"] == "-1.50"
    by_route = {row["route"]: row for row in stats["per_route"]}
    assert by_route["tie"]["win_rate"] is None and by_route["tie"]["ties"] == 1
    assert by_route["void"]["voids"] == 1 and by_route["win"]["win_rate"] == "1.0000"
