"""The three scanners behind one shape, used by the scan task, the scan command and replay."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

from . import arbitrage, binary, forex
from .candidates import ScanResult


def scan_times(start: int, end: int, every_ms: int):
    """Every multiple of `every_ms` since the Unix epoch from `start` to `end`, inclusive (an int64 array)."""
    import numpy as np

    if every_ms <= 0:
        raise ValueError("the scan interval must be positive")
    first = -(-start // every_ms) * every_ms
    return np.arange(first, end + 1, every_ms, dtype=np.int64)


def times_with_fresh_data(times, event_times, window_ms: int):
    """The scan times that have a market event in (t − window, t]; at the others a scan finds nothing.

    A scan only uses data younger than its kind's freshness window, so skipping the
    times without any is exact, and a multi-year recording scanned every minute takes
    seconds instead of hours.
    """
    import numpy as np

    if len(event_times) == 0:
        return times[:0]
    latest = np.searchsorted(event_times, times, side="right") - 1
    fresh = (latest >= 0) & (event_times[np.maximum(latest, 0)] > times - window_ms)
    return times[fresh]


@dataclass(frozen=True)
class Scanner:
    kind: str
    thresholds_type: Callable[[], Any]
    run: Callable[..., ScanResult]  # run(feed, now=, thresholds=, state=) -> ScanResult
    new_state: Callable[[], Any] = lambda: None
    # fresh_window_ms(thresholds, instruments or None): data older than this is never used
    fresh_window_ms: Callable[..., int] = lambda thresholds, instruments=None: 7 * 86_400_000
    # same_answer_until(ts, instruments=, events=, thresholds=): after a scan at ts that stored
    # nothing, with no new market data of its asset class since, a scan stores nothing again
    # until this time (None: no such promise, it must run again). A replay skips those scans.
    same_answer_until: Callable[..., int] | None = None
    asset_class: str | None = None  # the market data it reads (None: every instrument's)

    def thresholds_with(self, overrides: dict):
        """Default thresholds with `overrides`; an override this kind has no field for is an error."""
        names = {f.name for f in dataclasses.fields(self.thresholds_type)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ValueError(f"{', '.join(unknown)} does not apply to {self.kind} scans")
        return dataclasses.replace(self.thresholds_type(), **overrides)

    def scan(self, feed, *, now: int, thresholds, state=None, **options) -> ScanResult:
        return self.run(feed, now=now, thresholds=thresholds, state=state, **options)


def _arbitrage() -> Scanner:
    def run(feed, *, now, thresholds, state, venue_status=None, withdrawal_fees=None, rebalance=False):
        return arbitrage.scan_arbitrage(
            feed, now=now, thresholds=thresholds, history=state, venue_status=venue_status,
            withdrawal_fees=withdrawal_fees, rebalance=rebalance,
        )

    return Scanner("arbitrage", arbitrage.ArbitrageThresholds, run, arbitrage.RouteHistory,
                   lambda thresholds, instruments=None: thresholds.max_quote_age_ms)


def _forex() -> Scanner:
    def run(feed, *, now, thresholds, state):
        return forex.scan_forex(feed, now=now, thresholds=thresholds, cache=state)

    return Scanner("forex", forex.ForexThresholds, run, dict,
                   fresh_window_ms=lambda thresholds, instruments=None: 2 * 86_400_000 + thresholds.bar_grace_ms,  # a daily bar's, and more
                   same_answer_until=lambda ts, **market: forex.next_market_change(ts), asset_class="forex")


def _binary() -> Scanner:
    def run(feed, *, now, thresholds, state, payouts=None):
        return binary.scan_binary(feed, now=now, thresholds=thresholds, payouts=payouts, cache=state)

    return Scanner("binary", binary.BinaryThresholds, run, dict, fresh_window_ms=binary.fresh_window_ms,
                   same_answer_until=binary.same_answer_until)


class _Registry(dict):
    """kind -> Scanner, built on first use so importing this module stays cheap."""

    builders = {"arbitrage": _arbitrage, "forex": _forex, "binary": _binary}

    def __missing__(self, kind):
        self[kind] = scanner = self.builders[kind]()
        return scanner

    def __iter__(self):
        return iter(self.builders)

    def __contains__(self, kind):
        return kind in self.builders

    def keys(self):
        return self.builders.keys()


SCANNERS = _Registry()
