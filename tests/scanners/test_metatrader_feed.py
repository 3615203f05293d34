"""MetaTraderFeed against a double of the MetaTrader5 package serving recordings.

The real terminal cannot run here; the double (tests/doubles/metatrader5.py) answers with
MT5's own shapes (floats, numpy rates, error tuples), so what is checked is the feed's
conversion: exact Decimals equal to the recording, symbol names, status and recovery.
"""
from __future__ import annotations

import bisect
import csv
import json
import random
import sys
import types
from decimal import Decimal
from pathlib import Path

import pytest

from scanners.feeds import metatrader
from scanners.feeds.base import DEGRADED, DOWN, OK, TIMEFRAME_MS, UNAVAILABLE, Bar
from scanners.feeds.metatrader import MetaTraderFeed, price_decimal, unified_symbol
from tests.conftest import FIXTURES, shared_recordings
from tests.doubles import metatrader5 as mt5_double
from tests.doubles.metatrader5 import AUTH_FAILED, IPC_TIMEOUT, BookInfo, MetaTrader5Double

FIXTURE = FIXTURES / "mt5" / "fx-mt5-2024-03-05"
T0 = 1709632800000  # Tuesday 2024-03-05 10:00:00 UTC
LAST_TICK = 1709633045500
SATURDAY_NOON = 1709985600000  # 2024-03-09 12:00 UTC
MT5_ENV = ("MT5_BRIDGE", "MT5_LOGIN", "MT5_SERVER", "MT5_PATH", "MT5_SYMBOL_SUFFIX", "MT5_SERVER_UTC_OFFSET_HOURS")


@pytest.fixture(autouse=True)
def _no_mt5_env(monkeypatch):
    for name in MT5_ENV:
        monkeypatch.delenv(name, raising=False)


def read_csv(path: Path) -> list[dict]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def dec(text: str) -> Decimal | None:
    return Decimal(text) if text else None


def latest_row(rows: list[dict], clock_ms: int, times: list[int] | None = None) -> dict | None:
    """The row in force at clock_ms: the last with ts <= clock_ms (equal ts: the later row)."""
    times = times or [int(row["ts"]) for row in rows]
    count = bisect.bisect_right(times, clock_ms)
    return rows[count - 1] if count else None


def make_feed(double: MetaTrader5Double, symbols=("EURUSD", "GBPUSD"), **kwargs) -> MetaTraderFeed:
    return MetaTraderFeed(symbols=list(symbols), module=double, clock=lambda: double.clock_ms, **kwargs)


@pytest.fixture
def double():
    return MetaTrader5Double(FIXTURE, clock_ms=LAST_TICK)


@pytest.fixture
def feed(double):
    with make_feed(double) as feed:
        yield feed


def state_of(feed: MetaTraderFeed):
    (status,) = feed.status()
    return status


# -- without the terminal ---------------------------------------------------------------


def test_unavailable_off_windows_without_module(monkeypatch):
    monkeypatch.setattr(metatrader.sys, "platform", "linux")
    feed = MetaTraderFeed(symbols=["EURUSD", "GBPUSD"])
    status = state_of(feed)
    assert status.state == UNAVAILABLE
    assert status.detail == "MetaTrader5 runs only on Windows; on Linux see README (mt5linux bridge)"
    assert status.last_error == status.detail
    assert feed.quote("mt5", "EUR/USD") is None
    assert feed.book("mt5", "EUR/USD") is None
    assert feed.bars("mt5", "EUR/USD", "1m") == []
    feed.refresh()
    feed.close()
    assert state_of(feed).state == UNAVAILABLE
    assert [i.symbol for i in feed.instruments()] == ["EUR/USD", "GBP/USD"]
    assert feed.venues()["mt5"].asset_class == "forex"
    assert feed.taker_fee("mt5") == Decimal("0")
    assert "MetaTrader5" not in sys.modules


def test_unavailable_on_windows_without_the_package(monkeypatch):
    monkeypatch.setattr(metatrader.sys, "platform", "win32")
    monkeypatch.setitem(sys.modules, "MetaTrader5", None)
    feed = MetaTraderFeed(symbols=["EURUSD"])
    assert state_of(feed).state == UNAVAILABLE
    assert "MetaTrader5 package is not installed" in state_of(feed).detail
    assert feed.quote("mt5", "EUR/USD") is None


@pytest.mark.django_db
def test_build_feed_makes_an_unavailable_mt5_feed_off_windows(monkeypatch, settings):
    from scanners.feeds import build_feed

    monkeypatch.setattr(metatrader.sys, "platform", "linux")
    settings.MT5_SYMBOLS = ["EURUSD", "USDJPY"]
    feed = build_feed("mt5")
    assert isinstance(feed, MetaTraderFeed)
    assert feed.name == "mt5"
    assert state_of(feed).state == UNAVAILABLE
    assert [i.symbol for i in feed.instruments()] == ["EUR/USD", "USD/JPY"]


# -- symbols and prices -----------------------------------------------------------------


@pytest.mark.parametrize(
    "mt5_name, suffix, unified",
    [
        ("EURUSD", "", "EUR/USD"),
        ("GBPUSD", "", "GBP/USD"),
        ("EURUSD.m", ".m", "EUR/USD"),
        ("EURUSDm", "m", "EUR/USD"),
        ("EURUSD.pro", "", "EUR/USD"),
        ("EURUSDm", "", "EUR/USD"),
        ("USDJPY#", "", "USD/JPY"),
        ("EURUSD_i", "_i", "EUR/USD"),
        ("XAUUSD", "", "XAU/USD"),
    ],
)
def test_unified_symbol(mt5_name, suffix, unified):
    assert unified_symbol(mt5_name, suffix) == unified


@pytest.mark.parametrize("mt5_name", ["US30", "GER40.cash", "EURUSDX", "BTCUSDT"])
def test_unified_symbol_refuses_what_is_not_a_pair(mt5_name):
    with pytest.raises(ValueError, match="not a currency pair"):
        unified_symbol(mt5_name)


@pytest.mark.parametrize(
    "value, digits, text",
    [(1.08123, 5, "1.08123"), (1.0812, 5, "1.08120"), (151.234, 3, "151.234"), (0.1 + 0.2, 1, "0.3"), (0.0, 5, None)],
)
def test_price_decimal_uses_the_symbol_digits(value, digits, text):
    price = price_decimal(value, digits)
    assert (None if price is None else str(price)) == text


def test_quotes_are_exact_decimals_of_the_recording(double, feed):
    double.set_clock(T0)
    quote = feed.quote("mt5", "EUR/USD")
    assert (quote.venue, quote.symbol, quote.ts) == ("mt5", "EUR/USD", T0)
    assert str(quote.bid) == "1.08120" and str(quote.ask) == "1.08122"
    assert quote.bid_size is None and quote.ask_size is None

    double.set_clock(T0 + 1500)
    raw = double.symbol_info_tick("EURUSD")
    assert isinstance(raw.bid, float)
    assert Decimal(raw.bid) != Decimal("1.08124")
    quote = feed.quote("mt5", "EUR/USD")
    assert (quote.ts, quote.bid, quote.ask) == (T0 + 1500, Decimal("1.08124"), Decimal("1.08126"))

    for clock in (T0 - 1, T0, T0 + 1499, T0 + 1500, T0 + 60_000, T0 + 185_000, LAST_TICK, LAST_TICK + 10**6):
        double.set_clock(clock)
        for symbol, name in (("EUR/USD", "EUR-USD"), ("GBP/USD", "GBP-USD")):
            row = latest_row(read_csv(FIXTURE / "quotes" / "mt5" / f"{name}.csv"), clock)
            quote = feed.quote("mt5", symbol)
            if row is None:
                assert quote is None
            else:
                assert (quote.ts, quote.bid, quote.ask) == (int(row["ts"]), dec(row["bid"]), dec(row["ask"]))


def test_locked_quote_is_kept(double, feed):
    double.set_clock(T0 + 185_000)
    quote = feed.quote("mt5", "EUR/USD")
    assert quote.crossed and quote.bid == quote.ask == Decimal("1.08130")


def test_unknown_symbol_or_venue_answers_nothing(feed):
    assert feed.quote("mt5", "USD/JPY") is None
    assert feed.quote("oanda", "EUR/USD") is None
    assert feed.bars("mt5", "USD/JPY", "1m") == []
    assert feed.bars("mt5", "EUR/USD", "1s") == []


def test_bars_are_the_recorded_bid_bars_with_the_gap(double, feed):
    rows = read_csv(FIXTURE / "bars" / "mt5" / "EUR-USD@1m.csv")
    expected = [
        Bar(int(r["ts"]), dec(r["open"]), dec(r["high"]), dec(r["low"]), dec(r["close"]), dec(r["volume"]))
        for r in rows
    ]
    assert [bar.ts - T0 for bar in expected] == [0, 60_000, 180_000, 240_000]  # 10:02 is a gap
    # at LAST_TICK (10:04:05.5) the 10:04 bar is still forming: its close is not final, so it is not served
    assert feed.bars("mt5", "EUR/USD", "1m") == expected[:3]
    assert feed.bars("mt5", "EUR/USD", "1m", limit=2) == expected[1:3]
    double.set_clock(T0 + 300_000)
    assert feed.bars("mt5", "EUR/USD", "1m") == expected
    assert str(feed.bars("mt5", "EUR/USD", "1m")[0].open) == "1.08120"

    double.set_clock(T0 + 179_999)
    assert feed.bars("mt5", "EUR/USD", "1m") == expected[:2]
    double.set_clock(T0 - 1)
    assert feed.bars("mt5", "EUR/USD", "1m") == []

    double.set_clock(LAST_TICK + 60_000)
    gbp = feed.bars("mt5", "GBP/USD", "1m")
    assert [bar.volume for bar in gbp] == [None, None, None]
    assert gbp[0] == Bar(T0, Decimal("1.26540"), Decimal("1.26551"), Decimal("1.26540"), Decimal("1.26551"))
    (call,) = [args for args in double.called("copy_rates_from_pos") if args[0] == "GBPUSD"]
    assert call == ("GBPUSD", mt5_double.TIMEFRAME_M1, 0, 101)  # one more: the forming bar is left out


def test_quote_history_keeps_what_was_polled(double, feed):
    for clock in (T0, T0 + 1500, T0 + 1600, T0 + 61_000, T0 + 185_000):
        double.set_clock(clock)
        feed.refresh()
    history = feed.quote_history("mt5", "EUR/USD", since=T0)
    assert [(q.ts, q.bid) for q in history] == [
        (T0 + 1500, Decimal("1.08124")),
        (T0 + 61_000, Decimal("1.08119")),
        (T0 + 185_000, Decimal("1.08130")),
    ]
    assert [q.ts for q in feed.quote_history("mt5", "GBP/USD", since=0)][0] == T0 + 200
    assert feed.quote_history("oanda", "EUR/USD", since=0) == []


def test_broker_suffix_maps_to_unified_symbols():
    double = MetaTrader5Double(FIXTURE, suffix=".m", clock_ms=LAST_TICK)
    with make_feed(double, symbols=["EURUSD.m", "GBPUSD.m"], symbol_suffix=".m", venue="icmarkets") as feed:
        assert [i.symbol for i in feed.instruments()] == ["EUR/USD", "GBP/USD"]
        assert list(feed.venues()) == ["icmarkets"]
        quote = feed.quote("icmarkets", "GBP/USD")
        assert (quote.venue, quote.bid, quote.ask) == ("icmarkets", Decimal("1.26560"), Decimal("1.26566"))
        assert double.called("symbol_info_tick")[-1] == ("GBPUSD.m",)


def test_symbols_are_selected_once_per_connection(double, feed):
    for _ in range(3):
        feed.quote("mt5", "EUR/USD")
        feed.bars("mt5", "GBP/USD", "1m")
        feed.refresh()
    assert sorted(double.called("symbol_select")) == [("EURUSD", True), ("GBPUSD", True)]
    assert len(double.called("initialize")) == 1


def test_book_is_none_where_the_broker_offers_no_depth(double, feed):
    assert feed.book("mt5", "EUR/USD") is None
    assert feed.book("mt5", "EUR/USD") is None
    assert len(double.called("market_book_add")) == 1


def test_book_from_market_depth(double, feed):
    double.depth["EURUSD"] = [
        BookInfo(mt5_double.BOOK_TYPE_SELL, 1.08106, 3, 3.0),
        BookInfo(mt5_double.BOOK_TYPE_SELL, 1.08104, 1, 1.5),
        BookInfo(mt5_double.BOOK_TYPE_BUY, 1.08101, 2, 2.0),
        BookInfo(mt5_double.BOOK_TYPE_BUY, 1.081, 5, 0.1),
    ]
    book = feed.book("mt5", "EUR/USD")
    assert book.bids == ((Decimal("1.08101"), Decimal("2.0")), (Decimal("1.08100"), Decimal("0.1")))
    assert book.asks == ((Decimal("1.08104"), Decimal("1.5")), (Decimal("1.08106"), Decimal("3.0")))
    assert book.ts == LAST_TICK
    assert feed.book("mt5", "EUR/USD", depth=1).asks == ((Decimal("1.08104"), Decimal("1.5")),)
    assert any(i.has_books for i in feed.instruments() if i.symbol == "EUR/USD")


# -- connection, status, recovery -------------------------------------------------------


@pytest.mark.parametrize("error", [AUTH_FAILED, IPC_TIMEOUT])
def test_initialize_failure_is_down_with_the_reason_then_recovers(double, feed, error):
    double.fail_initialize = error
    feed.refresh()
    status = state_of(feed)
    assert status.state == DOWN
    assert str(error[0]) in status.last_error and error[1] in status.last_error
    assert status.detail == status.last_error
    assert feed.quote("mt5", "EUR/USD") is None
    assert feed.bars("mt5", "EUR/USD", "1m") == []

    feed.refresh()
    assert len(double.called("initialize")) == 2

    double.fail_initialize = None
    feed.refresh()
    assert state_of(feed).state == OK
    assert feed.quote("mt5", "EUR/USD").bid == Decimal("1.08101")


def test_lost_terminal_is_down_until_refresh_reconnects(double, feed):
    assert feed.quote("mt5", "EUR/USD") is not None
    double.drop_connection(IPC_TIMEOUT)
    assert feed.quote("mt5", "EUR/USD") is None
    status = state_of(feed)
    assert status.state == DOWN and "IPC timeout" in status.last_error
    feed.refresh()
    assert state_of(feed).state == OK
    assert feed.quote("mt5", "GBP/USD").bid == Decimal("1.26560")


def test_status_reports_tick_age_and_stale_terminal(double, feed):
    double.set_clock(LAST_TICK + 2_000)
    feed.refresh()
    status = state_of(feed)
    assert status.state == OK
    assert status.detail == "tick age EUR/USD 2 s, GBP/USD 97 s"

    double.set_clock(LAST_TICK + 120_000)
    feed.refresh()
    status = state_of(feed)
    assert status.state == DEGRADED
    assert "terminal stale: newest tick 120 s old" in status.last_error
    assert "tick age EUR/USD 120 s" in status.detail


def test_weekend_is_not_stale(double, feed):
    double.set_clock(SATURDAY_NOON)
    feed.refresh()
    status = state_of(feed)
    assert status.state == OK
    assert status.detail.startswith("forex market closed (weekend); tick age EUR/USD ")


def test_symbol_the_broker_lacks_degrades_but_others_work(double):
    with make_feed(double, symbols=["EURUSD", "USDJPY", "US30"]) as feed:
        feed.refresh()
        status = state_of(feed)
        assert status.state == DEGRADED
        assert "not offered by the broker: USDJPY" in status.detail
        assert "not a currency pair: US30" in status.detail
        assert feed.quote("mt5", "USD/JPY") is None
        assert feed.quote("mt5", "EUR/USD").bid == Decimal("1.08101")


def test_close_shuts_the_terminal_link_down(double):
    feed = make_feed(double)
    feed.quote("mt5", "EUR/USD")
    feed.close()
    assert double.called("shutdown") == [()]
    assert not double.connected
    assert state_of(feed).state == DOWN


def test_initialize_gets_only_what_the_user_set(double, monkeypatch):
    with make_feed(double) as feed:
        feed.refresh()
    assert double.called("initialize")[0] == (None, {"login": None, "password": None, "server": None})

    monkeypatch.setenv("MT5_LOGIN", "51234567")
    monkeypatch.setenv("MT5_SERVER", "ICMarketsSC-Demo")
    monkeypatch.setenv("MT5_PATH", r"C:\Program Files\MetaTrader 5\terminal64.exe")
    other = MetaTrader5Double(FIXTURE, clock_ms=LAST_TICK)
    with make_feed(other) as feed:
        feed.refresh()
    assert other.called("initialize")[0] == (
        r"C:\Program Files\MetaTrader 5\terminal64.exe",
        {"login": 51234567, "password": None, "server": "ICMarketsSC-Demo"},
    )


def test_bad_login_setting_is_reported(monkeypatch, double):
    monkeypatch.setenv("MT5_LOGIN", "demo-account")
    feed = make_feed(double)
    assert state_of(feed).state == UNAVAILABLE
    assert "MT5_LOGIN must be the account number" in state_of(feed).detail


def test_server_time_offset_is_taken_off_mt5_times(double, monkeypatch):
    monkeypatch.setenv("MT5_SERVER_UTC_OFFSET_HOURS", "2")
    with make_feed(double) as feed:
        assert feed.quote("mt5", "EUR/USD").ts == LAST_TICK - 7_200_000
        assert feed.bars("mt5", "EUR/USD", "1m")[0].ts == T0 - 7_200_000
    monkeypatch.setenv("MT5_SERVER_UTC_OFFSET_HOURS", "two")
    assert "must be hours" in state_of(make_feed(double)).detail


def test_bridge_module_is_built_from_mt5_bridge(monkeypatch, double):
    made = []

    def client(host, port):
        made.append((host, port))
        return double

    monkeypatch.setitem(sys.modules, "mt5linux", types.SimpleNamespace(MetaTrader5=client))
    monkeypatch.setattr(metatrader.sys, "platform", "linux")
    monkeypatch.setenv("MT5_BRIDGE", "wine-box:18812")
    with MetaTraderFeed(symbols=["EURUSD"], clock=lambda: double.clock_ms) as feed:
        assert feed.quote("mt5", "EUR/USD").bid == Decimal("1.08101")
    assert made == [("wine-box", 18812)]


def test_bridge_that_refuses_is_down_and_retried(monkeypatch, double):
    attempts = []

    def client(host, port):
        attempts.append(port)
        if len(attempts) == 1:
            raise ConnectionRefusedError("[Errno 111] Connection refused")
        return double

    monkeypatch.setitem(sys.modules, "mt5linux", types.SimpleNamespace(MetaTrader5=client))
    feed = MetaTraderFeed(symbols=["EURUSD"], bridge="localhost:18812", clock=lambda: double.clock_ms)
    feed.refresh()
    assert state_of(feed).state == DOWN
    assert "Connection refused" in state_of(feed).last_error
    feed.refresh()
    assert state_of(feed).state == OK
    assert attempts == [18812, 18812]


def test_bridge_without_mt5linux_is_unavailable(monkeypatch):
    monkeypatch.setitem(sys.modules, "mt5linux", None)
    feed = MetaTraderFeed(symbols=["EURUSD"], bridge="localhost:18812")
    assert state_of(feed).state == UNAVAILABLE
    assert "pip install mt5linux" in state_of(feed).detail


def test_no_order_functions_are_referenced():
    source = Path(metatrader.__file__).read_text(encoding="utf-8")
    for name in ("order_send", "order_check", "order_calc", "orders_", "positions_", "history_orders", "history_deals"):
        assert name not in source, f"{name} appears in scanners/feeds/metatrader.py"


# -- real forex recordings --------------------------------------------------------------


def _forex_cases():
    cases = []
    for recording in shared_recordings():
        manifest = json.loads((recording / "manifest.json").read_text(encoding="utf-8"))
        for venue, spec in sorted(manifest.get("venues", {}).items()):
            if spec.get("asset_class") == "forex" and (recording / "quotes" / venue).is_dir():
                cases.append(pytest.param(recording, venue, id=f"{recording.name}-{venue}"))
    if not cases:
        reason = "no forex recording in ../shared/recordings (real recordings live outside the repository)"
        cases.append(pytest.param(None, None, id="no-shared-forex", marks=pytest.mark.skip(reason=reason)))
    return cases


@pytest.mark.shared
@pytest.mark.parametrize("recording, venue", _forex_cases())
def test_shared_forex_recording_served_through_the_double(recording, venue):
    double = MetaTrader5Double(recording, venue)
    names = sorted(double.symbols)
    with make_feed(double, symbols=names, venue=venue) as feed:
        rng = random.Random(f"{recording.name}/{venue}")
        for mt5_name in names:
            symbol = unified_symbol(mt5_name)
            rows = read_csv(recording / "quotes" / venue / f"{symbol.replace('/', '-')}.csv")
            times = [int(row["ts"]) for row in rows]
            sampled = {times[0] - 1, times[0], times[-1], times[-1] + 3_600_000}
            for index in rng.sample(range(len(rows)), min(40, len(rows))):
                sampled.update({times[index], times[index] - 1, times[index] + 1})
            for clock in sorted(sampled):
                double.set_clock(clock)
                row = latest_row(rows, clock, times)
                quote = feed.quote(venue, symbol)
                if row is None or not (row["bid"] or row["ask"]):
                    assert quote is None, clock
                    continue
                assert (quote.ts, quote.bid, quote.ask) == (int(row["ts"]), dec(row["bid"]), dec(row["ask"])), clock

            for path in sorted((recording / "bars" / venue).glob(f"{symbol.replace('/', '-')}@*.csv")):
                timeframe = path.stem.partition("@")[2]
                bar_rows = read_csv(path)
                clock = int(bar_rows[rng.randrange(len(bar_rows))]["ts"]) + 1
                double.set_clock(clock)
                expected = [
                    Bar(int(r["ts"]), dec(r["open"]), dec(r["high"]), dec(r["low"]), dec(r["close"]), dec(r["volume"]))
                    for r in bar_rows
                    if int(r["ts"]) + TIMEFRAME_MS[timeframe] <= clock  # completed bars only
                ][-50:]
                assert feed.bars(venue, symbol, timeframe, limit=50) == expected
        assert state_of(feed).state in (OK, DEGRADED)
