"""The price in force at a moment, and how old it was then: what entries fill on and what
binaries settle on.

A price is a two-sided quote (or a book's top), else the close of the instrument's finest
bar, observed at the bar's close time. The state in force at `ts` is the latest observation
at or before `ts`: never one from after it, so an age is never negative. A bar stays current
until the next one is due, so its freshness allowance is the maximum quote age plus its
period (`bar_ms`); a quote's is the maximum quote age alone.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from scanners.feeds.base import TIMEFRAME_MS, Feed, Quote


@dataclass(frozen=True)
class Observed:
    """A price as observed: the quote (a bar's close as bid and ask), when, and the bar period (0: a quote)."""

    quote: Quote
    bar_ms: int = 0

    @property
    def ts(self) -> int:
        return self.quote.ts

    @property
    def mid(self) -> Decimal:
        return self.quote.mid

    def age_ms(self, at: int) -> int:
        """How old the price was at `at`; never negative (a live quote seen just after is new)."""
        return max(0, at - self.quote.ts)


def _two_sided(quote: Quote | None) -> bool:
    return quote is not None and quote.bid is not None and quote.ask is not None


def _latest_quote(feed: Feed, venue: str, symbol: str, ts: int, since: int, until: int) -> Quote | None:
    """The latest two-sided quote (a book's top included) observed in [since, ts]: the one the
    feed says is in force at `ts` (a replay's last state at or before it; a live feed's current
    one, taken up to `until` as the fill's own time; a live clock not yet at `ts` raises
    `NotYetObserved`: the fill waits), else the latest two-sided one of the feed's history."""
    quote = feed.quote_after(venue, symbol, ts)
    if _two_sided(quote) and since <= quote.ts <= until:
        return quote
    for quote in reversed(feed.quote_history(venue, symbol, since - 1)):
        if quote.ts <= ts and _two_sided(quote):
            return quote
    return None


def _latest_bar(feed: Feed, venue: str, symbol: str, ts: int, since: int) -> Observed | None:
    """The close of the finest bar that closed in [since, ts], as a quote stamped at its close time."""
    timeframe = feed.finest_timeframe(venue, symbol)
    if not timeframe:
        return None
    span = TIMEFRAME_MS[timeframe]
    limit = max(1, (feed.now() - ts) // span + 2)  # bars after ts are at most this many: the one before is in reach
    for bar in reversed(feed.bars(venue, symbol, timeframe, limit=limit)):
        closed = bar.ts + span
        if closed <= ts:
            if closed < since:
                return None
            return Observed(Quote(venue, symbol, closed, bar.close, bar.close), span)
    return None


def price_at(feed: Feed, venue: str, symbol: str, ts: int, *, since: int) -> Observed | None:
    """The last price at or before `ts`, observed no earlier than `since`: a quote where there is one, else a bar close."""
    quote = _latest_quote(feed, venue, symbol, ts, since, until=ts)
    if quote is not None:
        return Observed(quote)
    return _latest_bar(feed, venue, symbol, ts, since)


def fresh_price_at(feed: Feed, venue: str, symbol: str, ts: int, *, max_age_ms: int,
                   latency_ms: int = 0) -> Observed | None:
    """The price in force at fill time `ts` if it is fresh then: a quote at most `max_age_ms`
    old, a bar close at most `max_age_ms` plus its period. A live feed's quote observed after
    `ts` counts up to the modelled latency later (its age is then 0), never beyond."""
    quote = _latest_quote(feed, venue, symbol, ts, ts - max_age_ms, until=ts + latency_ms)
    if quote is not None:
        return Observed(quote)
    timeframe = feed.finest_timeframe(venue, symbol)
    span = TIMEFRAME_MS[timeframe] if timeframe else 0
    return _latest_bar(feed, venue, symbol, ts, ts - max_age_ms - span)


def last_observed_ts(feed: Feed, venue: str, symbol: str) -> int | None:
    """When the instrument was last observed up to the feed's clock: its quote, or any of its bars' close."""
    stamps = []
    quote = feed.quote(venue, symbol)
    if quote is not None:
        stamps.append(quote.ts)
    for timeframe in feed.timeframes_of(venue, symbol):
        bars = feed.bars(venue, symbol, timeframe, limit=1)
        if bars:
            stamps.append(bars[-1].ts + TIMEFRAME_MS[timeframe])
    return max(stamps, default=None)
