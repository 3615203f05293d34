"""Binary options: the chance that the price is above (CALL) or below (PUT) today's at expiry.

The estimate is calibrated on the recent history of the same underlying, never assumed:

- Prices: closes of the underlying's finest bars at or below 1 minute (1s or 1m), else the
  mid of its quotes sampled every second (last value carried). `series` says which.
- Pattern at time t, for a horizon of h samples (the expiry): the sign of the change over
  the last h samples and over the last max(1, h/4) samples (nine patterns).
- For every past t in the lookback window whose outcome is known (t + h ≤ now) and whose
  pattern equals today's, the outcome is up (price[t+h] > price[t]), down, or equal.
- probability(CALL) = (prior_a + ups) / (prior_a + prior_b + samples), the posterior mean
  of a Beta(prior_a, prior_b) prior (default Beta(2, 2)) updated with those outcomes;
  PUT likewise with downs. Equal prices count against both (they refund in execution,
  they never win). Fewer than `min_samples` past occurrences and no estimate is made
  (`insufficient_history`). Occurrences a step apart share most of their move, so the
  reported `samples` counts independent windows (non-overlapping stretches of h samples
  holding one), `overlapping_samples` every occurrence.

expected_value per unit stake = p × payout − (1 − p), with the underlying's payout from
the database (default 0.85). Risk score = 100 × (1 − the 10th percentile of the Beta
posterior, by its normal approximation): a thin sample raises it. Ranking: the auto-executable expiry first, then expected value.

Skipped and counted: crossed quotes, data older than `max_quote_age_ms` past its cadence
(`stale_quote`: a bar is current until the next one is due, so closes are allowed one bar
period on top; `bar_ms` in the figures says which period, 0 for quote mids), and forex
underlyings while the forex market is closed.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

import numpy as np

from .candidates import BINARY, Candidate, ScanResult
from .feeds.base import MID_GRID_MS, TIMEFRAME_MS, Feed, grid_step_ms
from .forex import market_closed

FOUR = Decimal("0.0001")


@dataclass(frozen=True)
class BinaryThresholds:
    expiries: tuple[int, ...] = (60, 120, 300)
    min_probability: Decimal = Decimal("0.75")
    top_n: int = 1
    auto_expiry_s: int = 60
    auto_min_probability: Decimal = Decimal("0.75")
    default_payout: Decimal = Decimal("0.85")
    lookback_ms: int = 6 * 3_600_000
    prior_a: int = 2
    prior_b: int = 2
    min_samples: int = 30
    max_quote_age_ms: int = 10_000


def series_timeframe(instrument) -> str | None:
    """The bars a binary scan reads prices from: the finest of 60 s or less (instruments list their
    timeframes finest first), or None for quote mids."""
    return next((tf for tf in instrument.timeframes if TIMEFRAME_MS[tf] <= 60_000), None)


def price_series(feed: Feed, instrument, *, now: int, lookback_ms: int):
    """(prices on a regular grid, source) or None: the finest bars at or below 1 minute, else quote mids."""
    timeframe = series_timeframe(instrument)
    grid = feed.price_grid(instrument.venue, instrument.symbol, timeframe=timeframe, since=now - lookback_ms, now=now)
    if grid is None:
        return None
    return grid, f"{timeframe} closes" if timeframe else "quote mids every 1 s"


def fresh_window_ms(thresholds: BinaryThresholds, instruments=None) -> int:
    """How long after an instrument's last data a scan can still find an option: the quote age,
    plus the bar its series reads (a bar is current until the next is due; `scan_binary`'s stale
    rule). Without the instruments, a minute bar's allowance."""
    if instruments is None:
        return thresholds.max_quote_age_ms + 60_000 + 1
    bars = [TIMEFRAME_MS[tf] for tf in map(series_timeframe, instruments) if tf]
    return thresholds.max_quote_age_ms + max(bars, default=0) + 1


def same_answer_until(ts: int, *, instruments, events: np.ndarray, thresholds: BinaryThresholds) -> int:
    """After a scan at `ts` that stored nothing, and with no new market data, the first time a
    scan could answer otherwise: the next step of the finest price grid (its newest point moves
    on), or the next observation leaving the lookback window (`events`: every observation's time).
    Before it every input of `scan_binary` is the same, but for ages that only grow (a stale quote
    stays stale); a forex market opens and closes on the minute, a step of every grid."""
    step = min((grid_step_ms(series_timeframe(i)) for i in instruments), default=MID_GRID_MS)
    changes = [(ts // step + 1) * step]
    leaving = int(np.searchsorted(events, ts - thresholds.lookback_ms, side="right"))
    if leaving < len(events):
        changes.append(int(events[leaving]) + thresholds.lookback_ms)
    return min(changes)


def pattern_outcomes(prices: np.ndarray, horizon: int):
    """Today's pattern and, for past samples with the same pattern, the outcomes (+1, −1, 0)."""
    today, outcomes, _ = _pattern_samples(prices, horizon)
    return today, outcomes


def independent_windows(times: np.ndarray, horizon: int) -> int:
    """How many non-overlapping stretches of `horizon` samples the matching samples (`times`, in
    order) fall in: each outcome spans `horizon` samples, so neighbours share most of their move
    and count as one. Counted as the changes of stretch along the sorted times (no sort)."""
    if not len(times):
        return 0
    stretches = times // horizon
    return int(np.count_nonzero(stretches[1:] != stretches[:-1])) + 1


def _pattern_samples(prices: np.ndarray, horizon: int):
    short = max(1, horizon // 4)
    n = len(prices)
    if n < 2 * horizon + 2:
        return None, np.empty(0), np.empty(0, dtype=np.int64)
    t = np.arange(horizon, n - horizon)
    long_sign = np.sign(prices[t] - prices[t - horizon])
    short_sign = np.sign(prices[t] - prices[t - short])
    outcome = np.sign(prices[t + horizon] - prices[t])
    today = (np.sign(prices[-1] - prices[-1 - horizon]), np.sign(prices[-1] - prices[-1 - short]))
    same = (long_sign == today[0]) & (short_sign == today[1])
    return today, outcome[same], t[same]


class PatternIndex:
    """`pattern_outcomes` answered by counting instead of recomputing, for a grid that never changes.

    Every sample t of the whole grid gets its pattern code and outcome once; per code the
    samples are kept in time order with running counts of ups and downs, so the counts for
    any window are two binary searches. The same numbers as `pattern_outcomes` on the window.
    """

    def __init__(self, values: np.ndarray, horizon: int):
        self.horizon, self.short = horizon, max(1, horizon // 4)
        t = np.arange(horizon, max(horizon, len(values) - horizon))
        code = 3 * (np.sign(values[t] - values[t - horizon]) + 1) + np.sign(values[t] - values[t - self.short]) + 1
        outcome = np.sign(values[t + horizon] - values[t])
        self.by_code = {}
        for c in range(9):
            chosen = code == c
            self.by_code[c] = (t[chosen], np.concatenate(([0], np.cumsum(outcome[chosen] > 0))),
                               np.concatenate(([0], np.cumsum(outcome[chosen] < 0))))

    def counts(self, values: np.ndarray, lo: int, hi: int):
        """(today's pattern, ups, downs, samples, independent windows) for the window values[lo:hi + 1],
        or None when it is too short."""
        h = self.horizon
        if hi - lo + 1 < 2 * h + 2:
            return None
        today = (np.sign(values[hi] - values[hi - h]), np.sign(values[hi] - values[hi - self.short]))
        if np.isnan(today[0]) or np.isnan(today[1]):  # an unknown price: no past sample matches it
            return today, 0, 0, 0, 0
        times, ups, downs = self.by_code[int(3 * (today[0] + 1) + today[1] + 1)]
        first, last = np.searchsorted(times, lo + h, side="left"), np.searchsorted(times, hi - h, side="right")
        return (today, int(ups[last] - ups[first]), int(downs[last] - downs[first]), int(last - first),
                independent_windows(times[first:last] - lo, h))


def pattern_counts(grid, horizon: int, cache: dict | None):
    """(today's pattern, ups, downs, samples, independent windows) over the grid's window, or None when it is too short."""
    if grid.stable and cache is not None:
        key = (id(grid.values), horizon)
        index = cache.get(key)
        if index is None or index[0] is not grid.values:
            index = cache[key] = (grid.values, PatternIndex(grid.values, horizon))
        return index[1].counts(grid.values, grid.lo, grid.hi)
    today, outcomes, times = _pattern_samples(grid.window, horizon)
    if today is None:
        return None
    return (today, int((outcomes > 0).sum()), int((outcomes < 0).sum()), len(outcomes),
            independent_windows(times, horizon))


def scan_binary(feed: Feed, *, now: int, thresholds: BinaryThresholds, payouts: dict | None = None,
                cache: dict | None = None) -> ScanResult:
    """Every CALL or PUT with probability at or above the threshold, best expected value first.

    `cache` (kept by the caller between scans) holds pattern indexes of grids that never change."""
    result = ScanResult(kind=BINARY, ts=now)
    payouts = payouts or {}
    venues = feed.venues()
    for instrument in feed.instruments():
        result.instruments_seen += 1
        if venues[instrument.venue].asset_class == "forex" and market_closed(now):
            result.skipped["market_closed"] += 1
            continue
        quote = feed.quote(instrument.venue, instrument.symbol)
        if quote is not None and quote.crossed:
            result.skipped["crossed_quote"] += 1
            continue
        series = price_series(feed, instrument, now=now, lookback_ms=thresholds.lookback_ms)
        if series is None:
            result.skipped["insufficient_history"] += 1
            continue
        grid, source = series
        last_seen, step = grid.last_seen, grid.step
        bar_ms = step if source.endswith("closes") else 0
        allowed_age = thresholds.max_quote_age_ms + bar_ms
        latest = max(int(last_seen), quote.ts if quote else 0)
        if now - latest > allowed_age:
            result.skipped["stale_quote"] += 1
            continue
        if quote is not None and quote.mid is not None:
            entry, observed = quote.mid, quote.ts
        else:
            entry, observed = Decimal(repr(float(grid.values[grid.hi]))), int(last_seen)
        payout = Decimal(str(payouts.get(instrument.symbol, thresholds.default_payout)))
        for expiry in thresholds.expiries:
            horizon = expiry * 1000 // step
            if horizon < 1 or (expiry * 1000) % step:
                continue
            counted = pattern_counts(grid, horizon, cache)
            result.evaluated += 1
            if counted is None or counted[3] < thresholds.min_samples:
                result.skipped["insufficient_history"] += 1
                continue
            today, ups, downs, samples, independent = counted
            for direction, wins in (("CALL", ups), ("PUT", downs)):
                candidate = _candidate(
                    instrument, direction, wins, samples, expiry, entry, payout, now=now, observed=observed,
                    independent=independent,
                    thresholds=thresholds, pattern=f"{int(today[0]):+d}/{int(today[1]):+d}", source=source,
                    bar_ms=bar_ms,
                )
                if candidate is not None:
                    result.candidates.append(candidate)
    # the auto-executable expiry first: with one option stored per scan, the one the desk may trade
    result.candidates.sort(key=lambda c: (int(c.figures["expiry_s"]) == thresholds.auto_expiry_s, c.rank), reverse=True)
    return result


def _candidate(instrument, direction, wins, samples, expiry, entry, payout, *, now, observed, thresholds, pattern, source,
               bar_ms=0, independent=0):
    a = thresholds.prior_a + wins
    b = thresholds.prior_b + samples - wins
    mean = a / (a + b)
    probability = Decimal(repr(mean)).quantize(FOUR)
    if probability < thresholds.min_probability:
        return None
    spread = math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))
    lower = max(0.0, mean - 1.2816 * spread)
    expected_value = (probability * payout - (1 - probability)).quantize(FOUR)
    risk = Decimal(repr(100 * (1 - lower))).quantize(Decimal("0.01"))
    return Candidate(
        BINARY, now, observed, risk, expected_value,
        {
            "symbol": instrument.symbol, "venue": instrument.venue, "direction": direction, "expiry_s": expiry,
            "probability": probability, "samples": independent, "overlapping_samples": samples, "payout": payout,
            "expected_value": expected_value,
            "entry_price": entry, "pattern": pattern, "series": source, "bar_ms": bar_ms,
        },
    )
