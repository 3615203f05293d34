"""Binary probabilities: Beta posterior by hand, expected value, honesty on real data."""
import dataclasses
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scanners.binary import (BinaryThresholds, PatternIndex, fresh_window_ms, independent_windows, pattern_outcomes,
                             same_answer_until, scan_binary)
from scanners.feeds.base import Bar, Instrument
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from scanners.forex import market_closed
from tests.conftest import shared_recording

from .market import D, MemoryMarket

NOW = 1_700_000_400_000 - 1_700_000_400_000 % 60_000  # a Tuesday, 2023-11-14


def test_pattern_outcomes_on_a_known_series():
    # a staircase up: every change over any horizon is up, so the pattern (+1/+1) was always followed by up
    prices = np.arange(100, dtype=float)
    today, outcomes = pattern_outcomes(prices, 5)
    assert today == (1.0, 1.0)
    assert len(outcomes) == 100 - 2 * 5 and (outcomes > 0).all()


def market_with_closes(closes, step_ms=1000):
    market = MemoryMarket(NOW)
    start = NOW - len(closes) * step_ms
    market.bar_series[("v", "BTC/USD", "1s")] = [
        Bar(start + i * step_ms, D(c), D(c), D(c), D(c)) for i, c in enumerate(closes)
    ]
    market.set_quote("v", "BTC/USD", str(closes[-1] - 0.5), str(closes[-1] + 0.5))
    market.instruments = lambda: [Instrument("v", "BTC/USD", "crypto", has_quotes=True, timeframes=("1s",))]
    return market


def test_posterior_mean_and_expected_value_by_hand():
    closes = [float(100 + i) for i in range(400)]  # always up
    market = market_with_closes(closes)
    thresholds = BinaryThresholds(expiries=(60,), min_probability=D("0"))
    result = scan_binary(market, now=NOW, thresholds=thresholds, payouts={"BTC/USD": D("0.9")})
    call = next(c for c in result.candidates if c.figures["direction"] == "CALL")
    samples = call.figures["overlapping_samples"]
    assert samples == 400 - 2 * 60 and call.figures["samples"] == 5  # 280 overlapping outcomes of 60 samples each
    # Beta(2, 2) prior, every sample up: (2 + n) / (4 + n)
    expected = Decimal(2 + samples) / Decimal(4 + samples)
    assert call.figures["probability"] == expected.quantize(D("0.0001"))
    assert call.figures["expected_value"] == (call.figures["probability"] * D("0.9") - (1 - call.figures["probability"])).quantize(D("0.0001"))
    put = next(c for c in result.candidates if c.figures["direction"] == "PUT")
    assert put.figures["probability"] == (Decimal(2) / Decimal(4 + samples)).quantize(D("0.0001"))
    assert call.figures["entry_price"] == D(str(closes[-1]))


def test_thin_history_gives_no_estimate_and_ties_never_win():
    market = market_with_closes([100.0] * 30)
    result = scan_binary(market, now=NOW, thresholds=BinaryThresholds(min_probability=D("0")))
    assert result.candidates == [] and result.skipped["insufficient_history"] >= 1
    flat = market_with_closes([100.0] * 400)
    result = scan_binary(flat, now=NOW, thresholds=BinaryThresholds(expiries=(60,), min_probability=D("0")))
    for candidate in result.candidates:  # every outcome a tie: both sides at the prior's pull towards 0
        assert candidate.figures["probability"] == (Decimal(2) / Decimal(4 + candidate.figures["overlapping_samples"])).quantize(D("0.0001"))


def test_crossed_and_stale_quotes_are_skipped():
    market = market_with_closes([float(100 + i) for i in range(400)])
    market.set_quote("v", "BTC/USD", "101", "100")
    assert scan_binary(market, now=NOW, thresholds=BinaryThresholds()).skipped["crossed_quote"] == 1
    market = market_with_closes([float(100 + i) for i in range(400)])
    later = NOW + 120_000
    assert scan_binary(market, now=later, thresholds=BinaryThresholds()).skipped["stale_quote"] == 1


def test_the_freshness_window_a_replay_schedules_by_is_the_scan_s_own_stale_rule():
    """A replay runs no binary scan later than this window after the last market data: the scan
    would only say `stale_quote` (quote age 5 s, plus the finest bar of 60 s or less)."""
    thresholds = BinaryThresholds(expiries=(60,), min_probability=D("0"), max_quote_age_ms=5000)
    quotes_only = Instrument("v", "EUR/USD", "forex", has_quotes=True)
    hourly = Instrument("v", "EUR/USD", "forex", has_quotes=True, timeframes=("1h",))
    seconds = Instrument("v", "BTC/USD", "crypto", has_quotes=True, timeframes=("1s", "1m"))
    assert fresh_window_ms(thresholds, [quotes_only]) == fresh_window_ms(thresholds, [hourly]) == 5000 + 1
    assert fresh_window_ms(thresholds, [quotes_only, seconds]) == 5000 + 1000 + 1
    assert fresh_window_ms(thresholds) == 5000 + 60_000 + 1  # instruments unknown: a minute bar's allowance
    market = market_with_closes([float(100 + i) for i in range(400)])  # 1 s bars, a quote at NOW
    window = fresh_window_ms(thresholds, market.instruments())
    last_fresh = scan_binary(market, now=NOW + window - 1, thresholds=thresholds)
    assert last_fresh.skipped["stale_quote"] == 0 and last_fresh.candidates
    assert scan_binary(market, now=NOW + window, thresholds=thresholds).skipped["stale_quote"] == 1


def test_a_scan_that_stored_nothing_answers_the_same_until_its_grid_or_window_moves():
    """Minute bars: the grid's newest point moves on at the next minute; an observation leaves
    the 6 h window at its time + 6 h. A replay runs no binary scan before the first of these
    unless new market data comes (a forex market opens and closes on a minute: a grid step)."""
    thresholds = BinaryThresholds()
    minute = Instrument("v", "BTC/USD", "crypto", has_quotes=True, timeframes=("1m", "1h"))
    ts = NOW + 5_000  # 5 s into a minute
    events = np.array([NOW - 6 * 3_600_000 + 30_000, NOW], dtype=np.int64)
    assert same_answer_until(ts, instruments=[minute], events=events, thresholds=thresholds) == NOW + 30_000
    assert same_answer_until(ts, instruments=[minute], events=events[1:], thresholds=thresholds) == NOW + 60_000
    quotes = Instrument("v", "BTC/USD", "crypto", has_quotes=True)  # mids on a 1 s grid
    assert same_answer_until(ts, instruments=[minute, quotes], events=events[1:], thresholds=thresholds) == NOW + 6_000
    friday = 1_700_254_800_000 - 10_000  # 2023-11-17 20:59:50 UTC, 10 s before the close
    fx = Instrument("v", "EUR/USD", "forex", has_quotes=True, timeframes=("1m",))
    assert same_answer_until(friday, instruments=[fx], events=events[:0], thresholds=thresholds) == friday + 10_000
    assert market_closed(friday + 10_000) and not market_closed(friday + 9_999)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(min_value=-100, max_value=500), max_size=60), st.integers(1, 20))
def test_independent_windows_are_the_distinct_stretches_the_samples_fall_in(samples, horizon):
    times = np.array(sorted(samples), dtype=np.int64)
    assert independent_windows(times, horizon) == len(set(int(t) // horizon for t in samples))


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(min_value=90, max_value=110), min_size=200, max_size=400))
def test_probability_is_a_probability(closes):
    market = market_with_closes([float(c) for c in closes])
    result = scan_binary(market, now=NOW, thresholds=BinaryThresholds(expiries=(60,), min_probability=D("0")))
    for candidate in result.candidates:
        assert D(0) <= candidate.figures["probability"] <= 1 and candidate.figures["samples"] >= 0
        assert D(0) <= candidate.risk_score <= 100


def test_one_second_bitcoin_gives_honest_estimates_with_samples():
    reader = RecordingReader(shared_recording("coinbase-1s-2016-10"))
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    thresholds = dataclasses.replace(BinaryThresholds(), min_probability=D("0"))
    estimates = []
    for hour in range(2, 40, 3):
        now = reader.start + hour * 3_600_000
        estimates += scan_binary(feed.at(now), now=now, thresholds=thresholds).candidates
    assert estimates and all(c.figures["samples"] > 0 for c in estimates)
    # a random-walk-like market: the calibrated estimates stay near a coin flip, never near certainty
    assert max(c.figures["probability"] for c in estimates) < D("0.75")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from([99.0, 100.0, 101.0, float("nan")]), min_size=1, max_size=120),
       st.integers(1, 12), st.data())
def test_the_pattern_index_counts_what_pattern_outcomes_finds_in_any_window(values, horizon, data):
    values = np.array(values)
    lo = data.draw(st.integers(0, len(values) - 1))
    hi = data.draw(st.integers(lo, len(values) - 1))
    today, outcomes = pattern_outcomes(values[lo:hi + 1], horizon)
    counted = PatternIndex(values, horizon).counts(values, lo, hi)
    if today is None:
        assert counted is None
        return
    if np.isnan(today[0]) or np.isnan(today[1]):
        assert counted[1:] == (0, 0, 0, 0)
    else:
        assert counted[1:4] == (int((outcomes > 0).sum()), int((outcomes < 0).sum()), len(outcomes))
        assert counted[4] <= counted[3] and (counted[4] > 0) == (counted[3] > 0)


def test_a_replay_serves_the_same_price_grid_as_the_window_alone(tmp_path):
    from scanners.feeds.base import Feed
    from tests.execution.synthetic import START, write_market

    reader = RecordingReader(write_market(tmp_path / "market", minutes=12))
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    kept_windows = 0
    for now in range(START - 30 * 60_000, START + 12 * 60_000, 37_000):
        feed.at(now)
        for timeframe, symbol, venue in ((None, "BTC/USDT", "alpha"), ("1m", "EUR/USD", "fxb"), (None, "EUR/USD", "fxb")):
            for lookback in (60_000, 3_600_000):
                kept = feed.price_grid(venue, symbol, timeframe=timeframe, since=now - lookback, now=now)
                alone = Feed.price_grid(feed, venue, symbol, timeframe=timeframe, since=now - lookback, now=now)
                assert (kept is None) == (alone is None)
                if kept is not None:
                    assert not alone.stable
                    kept_windows += kept.stable
                    assert kept.first_ts + kept.lo * kept.step == alone.first_ts and kept.last_seen == alone.last_seen
                    np.testing.assert_array_equal(kept.window, alone.window)
    assert kept_windows > 50
