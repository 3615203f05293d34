"""The replay feed: a recording served as of a replay clock, as a live desk would have seen it.

Real quirks are served as recorded: locked or crossed quotes come back as they are
(`Quote.crossed` says so), a missing bar is a gap, a partial day is partial.
"""
from __future__ import annotations

import bisect
from dataclasses import replace
from datetime import datetime, timedelta, timezone

import numpy as np

from ..base import (
    OK,
    TIMEFRAME_MS,
    Bar,
    Book,
    Feed,
    FeedStatus,
    Instrument,
    NotYetObserved,
    PriceGrid,
    Quote,
    Venue,
    grid_step_ms,
    wall_ms,
)
from .clock import ReplayClock
from .reader import RecordingReader, Series

EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_ms(ts: int) -> str:
    """Epoch ms as ISO 8601 UTC with milliseconds, computed without floats (beyond year 9999: the ms)."""
    try:
        moment = EPOCH + timedelta(milliseconds=ts)
    except OverflowError:
        return f"{ts} ms"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts % 1000:03d}Z"


class ReplayFeed(Feed):
    """A recording served as of its clock: never a value from after `now()`, never another instrument's."""

    name = "replay"

    def __init__(self, reader: RecordingReader, clock: ReplayClock):
        self.reader = reader
        self.clock = clock
        self._bars_made: dict[tuple, dict[int, Bar]] = {}  # a bar is parsed once, however often it is served

    def at(self, ts: int) -> ReplayFeed:
        """Move a stepped clock to `ts`; returns the feed so `feed.at(t).quote(...)` reads naturally."""
        self.clock.set(ts)
        return self

    def venues(self) -> dict[str, Venue]:
        return self.reader.venues()

    def instruments(self) -> list[Instrument]:
        return self.reader.instruments()

    def now(self) -> int:
        return self.clock.now()

    @staticmethod
    def _quote_at(series: Series, index: int, venue: str, symbol: str, shift: int) -> Quote:
        bid, ask, bid_size, ask_size = series.decimals(index)
        return Quote(venue, symbol, series.ts[index] + shift, bid, ask, bid_size, ask_size)

    def _quote_row(self, venue: str, symbol: str, when: int, shift: int) -> Quote | None:
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return None
        index = series.index_at(when)
        return None if index < 0 else self._quote_at(series, index, venue, symbol, shift)

    def _book(self, venue: str, symbol: str, when: int, shift: int, depth: int | None) -> Book | None:
        books = self.reader.books.get((venue, symbol))
        if books is None:
            return None
        index = books.index_at(when)
        if index < 0:
            return None
        ts, bids, asks = books.snapshot(index)
        if depth is not None:
            bids, asks = bids[:max(depth, 0)], asks[:max(depth, 0)]
        return Book(venue, symbol, ts + shift, bids, asks)

    def quote(self, venue: str, symbol: str) -> Quote | None:
        """The latest quote row at or before now, or the top of the latest book snapshot if that is newer."""
        when, shift = self.clock.position()
        quote = self._quote_row(venue, symbol, when, shift)
        book = self._book(venue, symbol, when, shift, depth=1)
        if book is not None and (quote is None or book.ts > quote.ts):
            return book.top()
        return quote

    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        """The latest snapshot at or before now, cut to `depth` levels a side."""
        when, shift = self.clock.position()
        return self._book(venue, symbol, when, shift, depth)

    def _after(self, ts: int) -> tuple[int, int]:
        """Recording time and shift for a look at `ts`: a realtime clock must have reached it first."""
        when, shift = self.clock.position()
        if not self.clock.is_stepped and when + shift < ts:
            raise NotYetObserved(ts, when + shift)
        shift = self.clock.shift_at(ts)
        return ts - shift, shift

    def book_after(self, venue: str, symbol: str, ts: int) -> Book | None:
        """The snapshot in force at `ts` (the last at or before it; None before the first): a fill
        after latency never sees a later state, and its age says how old the market it met was."""
        target, shift = self._after(ts)
        books = self.reader.books.get((venue, symbol))
        if books is None:
            return None
        index = bisect.bisect_right(books.ts, target) - 1
        if index < 0:
            return None
        stamp, bids, asks = books.snapshot(index)
        return Book(venue, symbol, stamp + shift, bids, asks)

    def quote_after(self, venue: str, symbol: str, ts: int) -> Quote | None:
        """The quote in force at `ts`: the latest quote row or book top at or before it."""
        target, shift = self._after(ts)
        candidates = []
        series = self.reader.quotes.get((venue, symbol))
        if series is not None and len(series):
            index = bisect.bisect_right(series.ts, target) - 1
            if index >= 0:
                candidates.append(self._quote_at(series, index, venue, symbol, shift))
        book = self.book_after(venue, symbol, ts)
        if book is not None:
            candidates.append(book.top())
        return max(candidates, key=lambda q: q.ts) if candidates else None

    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        """Up to `limit` completed bars (open ts + timeframe <= now), oldest first.

        A bar still forming at now is left out: its recorded high/low/close lie in the
        future, so serving it would leak future data.
        """
        series = self.reader.bars.get((venue, symbol, timeframe))
        if series is None or limit <= 0:
            return []
        when, shift = self.clock.position()
        last = series.index_at(when - TIMEFRAME_MS[timeframe])
        made = self._bars_made.setdefault((venue, symbol, timeframe), {})
        result = []
        for index in range(max(0, last - limit + 1), last + 1):
            bar = made.get(index)
            if bar is None:
                open_, high, low, close, volume = series.decimals(index)
                bar = made[index] = Bar(series.ts[index], open_, high, low, close, volume)
            result.append(replace(bar, ts=bar.ts + shift) if shift else bar)
        return result

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        """Quote rows in (since, now], oldest first (quotes files only; a looping replay only the current lap)."""
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return []
        when, shift = self.clock.position()
        first = bisect.bisect_right(series.ts, since - shift)
        last = series.index_at(when)
        return [self._quote_at(series, index, venue, symbol, shift) for index in range(first, last + 1)]

    def mid_history(self, venue: str, symbol: str, since: int):
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        when, shift = self.clock.position()
        stamps, mids, usable = series.mid_arrays()
        low = np.searchsorted(stamps, since - shift, side="right")
        high = np.searchsorted(stamps, when, side="right")
        keep = usable[low:high]
        return stamps[low:high][keep] + shift, mids[low:high][keep]

    def close_history(self, venue: str, symbol: str, timeframe: str, since: int):
        series = self.reader.bars.get((venue, symbol, timeframe))
        if series is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        when, shift = self.clock.position()
        span = TIMEFRAME_MS[timeframe]
        opens, closes = series.close_arrays()
        low = np.searchsorted(opens, since - shift - span, side="right")
        high = np.searchsorted(opens, when - span, side="right")
        return opens[low:high] + span + shift, closes[low:high]

    def price_grid(self, venue: str, symbol: str, *, timeframe: str | None, since: int, now: int) -> PriceGrid | None:
        """A window of the whole recording's grid, built once per instrument (`stable`: scanners may keep
        what they derive from it); the same values as `Feed.price_grid` computes from the window alone."""
        step = grid_step_ms(timeframe)
        full = self.reader.price_grid(venue, symbol, timeframe, step)
        _, shift = self.clock.position()
        if full is None or now - shift > full.first_ts + (len(full.values) - 1) * step:
            return super().price_grid(venue, symbol, timeframe=timeframe, since=since, now=now)
        stamps = full.stamps
        start = int(np.searchsorted(stamps, since - shift, side="right"))
        end = int(np.searchsorted(stamps, now - shift, side="right")) - 1
        if end < start:
            return None
        first = -(-int(stamps[start]) // step) * step
        lo, hi = (first - full.first_ts) // step, (now - shift - full.first_ts) // step
        if hi < lo:
            return None
        return PriceGrid(full.values, full.first_ts + shift, step, lo, hi, int(stamps[end]) + shift, stable=True)

    def status(self) -> list[FeedStatus]:
        """One OK status per venue; the detail says where in the recording the replay is."""
        when, shift = self.clock.position()
        clock = self.clock
        detail = f"replay {self.reader.name} at {iso_ms(when)}"
        if shift:
            detail += f" (lap {shift // (clock.end - clock.start + 1) + 1})"
        elif not clock.is_stepped and not clock.loop and when >= clock.end:
            detail += " (finished)"
        now = wall_ms()
        return [FeedStatus(venue=name, state=OK, detail=detail, last_ok_at=now) for name in sorted(self.reader.venues())]
