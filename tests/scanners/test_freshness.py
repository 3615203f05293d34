"""Freshness by cadence: a bar is current until the next one is due, plus a grace (the max quote age)."""
from datetime import datetime, timezone
from types import SimpleNamespace

from decisions.governor import make_decision
from decisions.pipeline import data_age_ms
from scanners.binary import BinaryThresholds, scan_binary
from scanners.candidates import signal_bar_ms
from scanners.feeds.base import Bar, Instrument
from scanners.forex import ForexThresholds, scan_forex
from scanners.models import Opportunity

from .market import D, MemoryMarket

CLOSE = int(datetime(2024, 3, 5, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)  # a Tuesday, a minute bar's close
GRACE = 5000  # the desk's max quote age


def forex_market(*, with_quote: bool):
    """80 one-minute bid bars, the last closing at CLOSE; the quote (if any) observed at CLOSE."""
    market = MemoryMarket(CLOSE, fees={"broker": "0"}, asset_class="forex")
    price = D("1.10000")
    bars = []
    for i in range(80):
        bars.append(Bar(CLOSE - (80 - i) * 60_000, price, price + D("0.00015"), price - D("0.00005"), price + D("0.0001")))
        price += D("0.0001")
    market.bar_series[("broker", "EUR/USD", "1m")] = bars
    if with_quote:
        market.set_quote("broker", "EUR/USD", str(price), str(price + D("0.00002")), ts=CLOSE)
    market.instruments = lambda: [Instrument("broker", "EUR/USD", "forex", has_quotes=with_quote, timeframes=("1m",))]
    return market


def at(market, now):
    market._now = now  # noqa: SLF001 (the memory market's clock is a plain attribute of the test double)
    return market


def forex_opportunity():
    return Opportunity(kind="forex", figures={"venue": "broker", "symbol": "EUR/USD", "signal": "BUY", "timeframe": "1m",
                                              "bar_ms": 60_000})


def governor(age):
    controls = SimpleNamespace(kill_switch=False, forex_enabled=True, arbitrage_enabled=True, mode="display")
    refused = SimpleNamespace(approved=False, reasons=["LOW_SCORE"])
    opportunity = SimpleNamespace(kind="forex", rank=1)
    return make_decision(opportunity, refused, refused, controls=controls, thresholds=SimpleNamespace(top_n=2),
                         data_age_ms=age, max_age_ms=GRACE, open_routes=set(), open_positions=0, max_open_positions=5)


def test_a_minute_signal_55_s_after_its_bar_closed_is_fresh_and_130_s_after_is_stale():
    market = forex_market(with_quote=True)
    opportunity = forex_opportunity()
    # 55 s after the close: 55 000 − 60 000 (the bar period) = −5 000 ms past the allowance, inside the 5 s grace
    assert data_age_ms(opportunity, at(market, CLOSE + 55_000), CLOSE + 55_000) == -5000
    assert governor(-5000).reasons[0] == "AGENT_SKIP"  # past the freshness rules: only the agent stopped it
    # 65 s: the next bar was due 5 s ago, the grace's last millisecond
    assert data_age_ms(opportunity, at(market, CLOSE + 65_000), CLOSE + 65_000) == 5000
    assert governor(5000).reasons[0] == "AGENT_SKIP"
    # 130 s: 70 000 ms past the allowance
    assert data_age_ms(opportunity, at(market, CLOSE + 130_000), CLOSE + 130_000) == 70_000
    assert governor(70_000).reasons == ["STALE_DATA"]


def test_bar_only_prices_are_judged_by_their_bar_too():
    market = forex_market(with_quote=False)
    opportunity = forex_opportunity()
    assert data_age_ms(opportunity, at(market, CLOSE + 55_000), CLOSE + 55_000) == -5000
    assert data_age_ms(opportunity, at(market, CLOSE + 130_000), CLOSE + 130_000) == 70_000


def test_a_quote_behind_an_arbitrage_has_no_bar_allowance():
    market = MemoryMarket(CLOSE)
    market.set_quote("a", "BTC/USD", "99", "100", ts=CLOSE)
    market.set_quote("b", "BTC/USD", "101", "102", ts=CLOSE - 1000)
    opportunity = Opportunity(kind="arbitrage", figures={"type": "cross_venue", "symbol": "BTC/USD", "buy_venue": "a",
                                                         "sell_venue": "b"})
    assert signal_bar_ms(opportunity.figures) == 0
    assert data_age_ms(opportunity, at(market, CLOSE + 5000), CLOSE + 5000) == 6000  # the older quote, 6 s: stale
    assert governor(6000).reasons == ["STALE_DATA"]


def test_signal_bar_ms_reads_the_figures():
    assert signal_bar_ms({"bar_ms": 1000}) == 1000
    assert signal_bar_ms({"timeframe": "15m"}) == 900_000  # a forex opportunity stored before `bar_ms`
    assert signal_bar_ms({"series": "quote mids every 1 s", "bar_ms": 0}) == 0


def test_the_forex_scanner_keeps_a_bar_until_the_next_is_due_plus_the_grace():
    thresholds = ForexThresholds(timeframe="1m", min_confidence=D(0), min_risk_reward=D(0), bar_grace_ms=GRACE)
    market = forex_market(with_quote=False)
    fresh = scan_forex(at(market, CLOSE + 55_000), now=CLOSE + 55_000, thresholds=thresholds)
    assert len(fresh.candidates) == 1 and fresh.candidates[0].figures["bar_ms"] == 60_000
    assert len(scan_forex(at(market, CLOSE + 65_000), now=CLOSE + 65_000, thresholds=thresholds).candidates) == 1
    stale = scan_forex(at(market, CLOSE + 130_000), now=CLOSE + 130_000, thresholds=thresholds)
    assert stale.candidates == [] and stale.skipped["stale_bars"] == 1


def test_binaries_on_minute_closes_carry_their_bar_period():
    market = MemoryMarket(CLOSE, fees={"x": "0"})
    closes = [D(100) + (D(1) if i % 2 else D(0)) for i in range(400)]  # alternating: a pattern with a known outcome
    market.bar_series[("x", "BTC/USD", "1m")] = [Bar(CLOSE - (400 - i) * 60_000, c, c, c, c) for i, c in enumerate(closes)]
    market.instruments = lambda: [Instrument("x", "BTC/USD", "crypto", timeframes=("1m",))]
    thresholds = BinaryThresholds(expiries=(60,), min_probability=D(0), lookback_ms=400 * 60_000, min_samples=1)
    fresh = scan_binary(at(market, CLOSE + 55_000), now=CLOSE + 55_000, thresholds=thresholds)
    assert fresh.candidates and {c.figures["bar_ms"] for c in fresh.candidates} == {60_000}
    # 60 s + the 10 s grace of binaries: at 71 s the next close is overdue
    stale = scan_binary(at(market, CLOSE + 71_000), now=CLOSE + 71_000, thresholds=thresholds)
    assert stale.candidates == [] and stale.skipped["stale_quote"] == 1
