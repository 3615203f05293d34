"""Forex signals: indicator arithmetic by hand, the signal's figures, weekends, real recordings."""
import dataclasses
from datetime import datetime, timezone
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scanners.feeds.base import Bar
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from scanners.forex import ForexThresholds, atr, ema, market_closed, rsi, scan_forex, signal_from
from tests.conftest import shared_recording

from .market import D, MemoryMarket

TUESDAY_NOON = int(datetime(2024, 3, 5, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)


def test_ema_rsi_atr_by_hand():
    assert ema(np.array([1.0, 2.0, 3.0]), 3).tolist() == [1.0, 1.5, 2.25]  # alpha = 2 / (3 + 1) = 0.5
    # 15 closes rising by 1 except one fall of 1: gains 13, losses 1 over 14 changes → RSI = 100 − 100 / (1 + 13) ≈ 92.857
    closes = np.array([10, 11, 12, 13, 14, 15, 16, 17, 16, 17, 18, 19, 20, 21, 22], dtype=float)
    assert rsi(closes) == pytest.approx(100 - 100 / (1 + 13 / 1))
    highs, lows = closes + 0.5, closes - 0.5
    # every true range: max(high − low = 1, |high − prev close|, |low − prev close|) = 1.5 when the close moves by 1
    assert atr(highs, lows, closes) == pytest.approx(1.5)


def trending_market(direction=1, closes=80, now=TUESDAY_NOON, quote=True):
    market = MemoryMarket(now, asset_class="forex")
    start = now - closes * 60_000
    price = Decimal("1.10000")
    bars = []
    for i in range(closes):
        step = Decimal("0.00010") * direction + (Decimal("0.00005") if i % 3 == 0 else Decimal("-0.00003")) * direction
        bars.append(Bar(start + i * 60_000, price, price + Decimal("0.00012"), price - Decimal("0.00012"), price + step))
        price += step
    market.bar_series[("broker", "EUR/USD", "1m")] = bars
    if quote:
        market.set_quote("broker", "EUR/USD", str(price), str(price + Decimal("0.00002")))
    market.instruments = lambda: [__import__("scanners.feeds.base", fromlist=["Instrument"]).Instrument(
        "broker", "EUR/USD", "forex", has_quotes=quote, timeframes=("1m",))]
    return market


def test_a_steady_uptrend_is_a_buy_with_atr_stops():
    market = trending_market(1)
    result = scan_forex(market, now=TUESDAY_NOON, thresholds=ForexThresholds(timeframe="1m", min_confidence=D("0")))
    [candidate] = result.candidates
    f = candidate.figures
    assert f["signal"] == "BUY" and Decimal(0) <= f["confidence"] <= 1
    quote = market.quote("broker", "EUR/USD")
    assert f["entry"] == quote.ask  # BUY at the ask; it closes at the bid, where the levels are
    atr_value = f["indicators"]["atr"]
    assert quote.bid - f["stop_loss"] == (atr_value * D("1.5")).quantize(D("0.00001"))
    assert f["take_profit"] - quote.bid == (atr_value * 4).quantize(D("0.00001"))
    assert f["spread"] == D("0.00002") and f["stop_from"] == "atr"
    assert f["risk_reward"] == ((f["take_profit"] - f["entry"]) / (f["entry"] - f["stop_loss"])).quantize(D("0.001"))
    assert f["risk_reward"] < D(4) / D("1.5")  # the spread counts against both sides
    assert candidate.risk_score == (100 * (1 - f["confidence"])).quantize(D("0.01"))


def test_a_downtrend_is_a_sell_at_the_bid():
    market = trending_market(-1)
    [candidate] = scan_forex(market, now=TUESDAY_NOON, thresholds=ForexThresholds(timeframe="1m", min_confidence=D("0"))).candidates
    assert candidate.figures["signal"] == "SELL"
    assert candidate.figures["entry"] == market.quote("broker", "EUR/USD").bid
    assert candidate.figures["stop_loss"] > candidate.figures["entry"] > candidate.figures["take_profit"]


def test_thresholds_filter_and_hold_is_never_a_candidate():
    market = trending_market(1)
    assert scan_forex(market, now=TUESDAY_NOON, thresholds=ForexThresholds(timeframe="1m", min_confidence=D("1.01"))).candidates == []
    assert scan_forex(market, now=TUESDAY_NOON, thresholds=ForexThresholds(timeframe="1m", min_risk_reward=D("5"))).candidates == []
    flat = np.full(60, 1.1)
    assert signal_from(flat, flat + 0.0001, flat - 0.0001)["signal"] == "HOLD"


def test_no_signal_at_weekends_or_on_stale_bars():
    saturday = int(datetime(2024, 3, 9, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)
    assert market_closed(saturday) and not market_closed(TUESDAY_NOON)
    assert market_closed(int(datetime(2024, 3, 8, 21, 30, tzinfo=timezone.utc).timestamp() * 1000))
    weekend = scan_forex(trending_market(1, now=saturday), now=saturday, thresholds=ForexThresholds(timeframe="1m", min_confidence=D(0)))
    assert weekend.candidates == [] and weekend.skipped["market_closed"] == 1
    later = TUESDAY_NOON + 10 * 60_000
    stale = scan_forex(trending_market(1), now=later, thresholds=ForexThresholds(timeframe="1m", min_confidence=D(0)))
    assert stale.candidates == [] and stale.skipped["stale_bars"] == 1


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(min_value=1.0, max_value=1.2), min_size=40, max_size=80))
def test_confidence_is_always_between_zero_and_one(closes):
    closes = np.array(closes)
    figures = signal_from(closes, closes + 0.001, closes - 0.001)
    assert 0.0 <= figures["confidence"] <= 1.0


def test_hourly_eurusd_for_weeks_never_signals_at_weekends():
    reader = RecordingReader(shared_recording("fx-eurusd-1h-2014-2015"))
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    signals = 0
    thresholds = dataclasses.replace(ForexThresholds(timeframe="1m"), timeframe="1h")
    for now in range(reader.start - reader.start % 3_600_000, reader.start + 6 * 7 * 86_400_000, 3_600_000):
        result = scan_forex(feed.at(now), now=now, thresholds=thresholds)
        if market_closed(now):
            assert result.candidates == []
        signals += len(result.candidates)
        for candidate in result.candidates:
            assert candidate.figures["timeframe"] == "1h" and candidate.figures["confidence"] >= D("0.6")
    assert signals > 0


def test_max_quote_age_requires_a_fresh_entry_quote():
    market = trending_market(1)
    fresh = ForexThresholds(timeframe="1m", min_confidence=D("0"), max_quote_age_ms=5000)
    assert len(scan_forex(market, now=TUESDAY_NOON, thresholds=fresh).candidates) == 1
    later = TUESDAY_NOON + 30_000
    result = scan_forex(market, now=later, thresholds=fresh)
    assert result.candidates == [] and result.skipped["stale_quote"] == 1


def test_the_indicator_cache_changes_nothing_but_the_work():
    market = trending_market(1)
    thresholds = ForexThresholds(timeframe="1m", min_confidence=D("0"))
    plain = scan_forex(market, now=TUESDAY_NOON, thresholds=thresholds)
    cache = {}
    first = scan_forex(market, now=TUESDAY_NOON, thresholds=thresholds, cache=cache)
    second = scan_forex(market, now=TUESDAY_NOON, thresholds=thresholds, cache=cache)
    assert len(cache) == 1
    assert [c.as_json() for c in plain.candidates] == [c.as_json() for c in first.candidates] == [c.as_json() for c in second.candidates]
