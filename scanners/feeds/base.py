"""The one interface every market feed implements.

A feed answers quotes, order books and bars for (venue, symbol). Every value carries
the time it was observed (`ts`, epoch milliseconds UTC), so a caller can always tell
how old it is against `feed.now()`. Prices and sizes are `Decimal`; `None` means the
venue did not say (never zero).
"""
from __future__ import annotations

import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

OK = "ok"
DEGRADED = "degraded"
DOWN = "down"
UNAVAILABLE = "unavailable"  # the feed cannot run on this machine at all (mt5 off Windows)

TIMEFRAME_MS = {
    "1s": 1_000,
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "1h": 3_600_000,
    "4h": 14_400_000,
    "1d": 86_400_000,
}


class FeedError(Exception):
    """A feed could not answer; the message says why."""


class NotYetObserved(FeedError):
    """The market state asked for lies after the feed's clock: ask again once it has passed."""

    def __init__(self, ts: int, now: int):
        self.ts, self.now = ts, now
        super().__init__(f"market state at {ts} not observed yet (feed clock {now})")


class RecordingError(FeedError):
    """A recording file is malformed; the message names the file and the line."""

    def __init__(self, path, line: int | None, problem: str):
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


def wall_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class Quote:
    venue: str
    symbol: str
    ts: int
    bid: Decimal | None
    ask: Decimal | None
    bid_size: Decimal | None = None
    ask_size: Decimal | None = None

    @property
    def crossed(self) -> bool:
        """Locked or crossed (bid >= ask): real feeds have these; they are not arbitrage."""
        return self.bid is not None and self.ask is not None and self.bid >= self.ask

    @property
    def mid(self) -> Decimal | None:
        if self.bid is None or self.ask is None:
            return None
        return (self.bid + self.ask) / 2


@dataclass(frozen=True)
class Book:
    """A full depth snapshot: bids descending, asks ascending, levels as (price, size)."""

    venue: str
    symbol: str
    ts: int
    bids: tuple[tuple[Decimal, Decimal], ...]
    asks: tuple[tuple[Decimal, Decimal], ...]

    def top(self) -> Quote:
        bid = self.bids[0] if self.bids else (None, None)
        ask = self.asks[0] if self.asks else (None, None)
        return Quote(self.venue, self.symbol, self.ts, bid[0], ask[0], bid[1], ask[1])


@dataclass(frozen=True)
class Bar:
    """OHLCV bar stamped at its open time; forex bars are bid bars with no volume."""

    ts: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal | None = None


@dataclass(frozen=True)
class PriceGrid:
    """Prices on a regular time grid, each the last observation at or before its time.

    `values[lo:hi + 1]` is the window asked for; `values[i]` is the price at
    `first_ts + i × step`. `stable`: `values` is the same array at every call and never
    changes (a replay serves its whole recording's grid), so figures derived from it can
    be kept between scans. Floats: for scanning math only.
    """

    values: np.ndarray
    first_ts: int
    step: int
    lo: int
    hi: int
    last_seen: int
    stable: bool = False

    @property
    def window(self):
        return self.values[self.lo:self.hi + 1]


MID_GRID_MS = 1000  # quote mids are put on a 1 s grid


def grid_step_ms(timeframe: str | None) -> int:
    """The step of a price grid of `timeframe`'s bar closes (None: quote mids)."""
    return TIMEFRAME_MS[timeframe] if timeframe else MID_GRID_MS


def price_grid_of(stamps, values, *, now: int, step: int) -> PriceGrid | None:
    """The grid from the first observation's step boundary to `now` over (stamps, values) (None: no data)."""
    import numpy as np

    if len(stamps) == 0:
        return None
    first = -(-int(stamps[0]) // step) * step
    grid = np.arange(first, now + 1, step, dtype=np.int64)
    if len(grid) == 0:
        return None
    positions = np.searchsorted(stamps, grid, side="right") - 1
    return PriceGrid(values[positions], first, step, 0, len(grid) - 1, int(stamps[-1]))


@dataclass(frozen=True)
class Instrument:
    venue: str
    symbol: str  # ccxt unified symbol, e.g. "BTC/USDT" or "BTC/USDT:USDT"
    asset_class: str  # "crypto" or "forex"
    has_quotes: bool = False
    has_books: bool = False
    timeframes: tuple[str, ...] = ()

    @property
    def base(self) -> str:
        return self.symbol.split("/")[0]

    @property
    def quote_currency(self) -> str:
        return self.symbol.split("/")[1].split(":")[0]


@dataclass(frozen=True)
class Venue:
    name: str
    asset_class: str
    taker_fee: Decimal


@dataclass
class FeedStatus:
    """Health of one venue as this feed sees it."""

    venue: str
    state: str = OK
    detail: str = ""
    last_error: str = ""
    error_at: int | None = None  # epoch ms of the last error
    last_ok_at: int | None = None  # epoch ms of the last good answer

    def as_dict(self) -> dict:
        return {
            "venue": self.venue,
            "state": self.state,
            "detail": self.detail,
            "last_error": self.last_error,
            "error_at": self.error_at,
            "last_ok_at": self.last_ok_at,
        }


@dataclass
class FeedStatusBoard:
    """Per-venue status kept by a feed; `mark_*` are called where answers arrive."""

    statuses: dict[str, FeedStatus] = field(default_factory=dict)

    def get(self, venue: str) -> FeedStatus:
        return self.statuses.setdefault(venue, FeedStatus(venue))

    def mark_ok(self, venue: str, detail: str = "") -> None:
        status = self.get(venue)
        status.state, status.detail, status.last_ok_at = OK, detail, wall_ms()

    def mark_error(self, venue: str, state: str, error: str) -> None:
        status = self.get(venue)
        status.state, status.last_error, status.error_at = state, error, wall_ms()

    def all(self) -> list[FeedStatus]:
        return [self.statuses[v] for v in sorted(self.statuses)]


class Feed(ABC):
    """Market data for several venues. Implementations: replay, ccxt, mt5."""

    name: str = ""

    @abstractmethod
    def venues(self) -> dict[str, Venue]:
        """Venues this feed serves, with asset class and taker fee."""

    @abstractmethod
    def instruments(self) -> list[Instrument]:
        """Every (venue, symbol) this feed can answer for."""

    @abstractmethod
    def now(self) -> int:
        """The feed's clock in epoch ms (wall time live, the replay clock in replay)."""

    @abstractmethod
    def quote(self, venue: str, symbol: str) -> Quote | None:
        """Latest top of book observed at or before `now()`, or None."""

    @abstractmethod
    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        """Latest depth snapshot observed at or before `now()`, or None."""

    @abstractmethod
    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        """Up to `limit` most recent completed bars (open time + timeframe <= `now()`), oldest first."""

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        """Quotes observed in (since, now()], oldest first; live feeds keep what they polled."""
        return []

    def mid_history(self, venue: str, symbol: str, since: int):
        """(ts, mid) arrays of the two-sided, uncrossed quotes in (since, now]: floats, for scanning math only."""
        import numpy as np

        usable = [q for q in self.quote_history(venue, symbol, since) if q.mid is not None and not q.crossed]
        return np.array([q.ts for q in usable], dtype=np.int64), np.array([float(q.mid) for q in usable])

    def close_history(self, venue: str, symbol: str, timeframe: str, since: int):
        """(close time, close) arrays of the completed bars that closed in (since, now]: floats, for scanning math."""
        import numpy as np

        span = TIMEFRAME_MS[timeframe]
        bars = [b for b in self.bars(venue, symbol, timeframe, limit=max(1, (self.now() - since) // span + 1))
                if b.ts + span > since]
        return np.array([b.ts + span for b in bars], dtype=np.int64), np.array([float(b.close) for b in bars])

    def price_grid(self, venue: str, symbol: str, *, timeframe: str | None, since: int, now: int) -> PriceGrid | None:
        """Bar closes of `timeframe` (quote mids every second when None) that appeared in (since, now], on a grid."""
        if timeframe:
            stamps, values = self.close_history(venue, symbol, timeframe, since=since)
        else:
            stamps, values = self.mid_history(venue, symbol, since=since)
        return price_grid_of(stamps, values, now=now, step=grid_step_ms(timeframe))

    def book_after(self, venue: str, symbol: str, ts: int) -> Book | None:
        """The market's depth at `ts` (a fill after latency): the state in force once the clock reaches `ts`."""
        if self.now() < ts:
            raise NotYetObserved(ts, self.now())
        return self.book(venue, symbol)

    def quote_after(self, venue: str, symbol: str, ts: int) -> Quote | None:
        if self.now() < ts:
            raise NotYetObserved(ts, self.now())
        return self.quote(venue, symbol)

    def mark(self, venue: str, symbol: str) -> tuple[Quote | None, int]:
        """The latest price: the quote, else the last completed bar's close as bid and ask.

        Returns (quote, bar_ms): bar_ms is the bar period when the price came from a bar
        (its `ts` is the bar's close time), 0 for a real quote; freshness checks allow it.
        """
        quote = self.quote(venue, symbol)
        if quote is not None and quote.bid is not None and quote.ask is not None:
            return quote, 0
        for timeframe in self.timeframes_of(venue, symbol):
            bars = self.bars(venue, symbol, timeframe, limit=1)
            if bars:
                span = TIMEFRAME_MS[timeframe]
                return Quote(venue, symbol, bars[-1].ts + span, bars[-1].close, bars[-1].close), span
        return quote, 0

    def timeframes_of(self, venue: str, symbol: str) -> list[str]:
        """The bar periods this instrument has, shortest first."""
        frames = next((i.timeframes for i in self.instruments() if i.venue == venue and i.symbol == symbol), ())
        return sorted(frames, key=TIMEFRAME_MS.get)

    def finest_timeframe(self, venue: str, symbol: str) -> str | None:
        frames = self.timeframes_of(venue, symbol)
        return frames[0] if frames else None

    def market_rules(self, venue: str, symbol: str) -> dict:
        """The venue's amount step, price tick and minimums where it defines them (Decimals or None)."""
        return {}

    @abstractmethod
    def status(self) -> list[FeedStatus]:
        """Status per venue."""

    def taker_fee(self, venue: str, symbol: str | None = None) -> Decimal:
        return self.venues()[venue].taker_fee

    def refresh(self, symbols: dict[str, list[str]] | None = None) -> bool:
        """Bring cached market state up to date; True when that brought new state (live
        feeds poll here, at most as often as they allow; a replay has nothing to fetch)."""
        return False

    def streamed_updates(self) -> list[Quote | Book]:
        """Quotes and books that arrived by stream since the last call, oldest first, for a
        recorder (a feed that only polls, or was not asked to keep them, has none)."""
        return []

    def close(self) -> None:
        """Release connections and files."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
