"""The ccxt feed: public market data of many venues at once. Paper only.

One asyncio loop, owned by the feed in a thread of its own, runs ccxt's async
exchanges with their rate limiting; `refresh()` (called from sync Celery tasks) polls
every venue concurrently and caches what came back. Markets load once per venue.

Venues named in `stream_venues` are followed through ccxt's streaming API (`ccxt.pro`)
where the venue offers it: one task per (symbol, order book or ticker) and per (symbol,
timeframe) of bars keeps the cache current between polls, and `refresh()` polls REST only
for what no live stream serves (docs/streaming.md).

Guards, so no code path can trade or touch an account: an exchange with credentials is
refused, the unified account and order methods are replaced by ones that raise, and
every HTTP request is checked to go to a public endpoint before ccxt sends it.

ccxt returns floats; each is turned into a `Decimal` through `str()`, whose shortest
round-trip form is the venue's decimal text for the prices venues publish.
"""
from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections import deque
from dataclasses import dataclass, field
from decimal import Decimal
from urllib.parse import urlparse

from .base import (
    DEGRADED,
    DOWN,
    TIMEFRAME_MS,
    Bar,
    Book,
    Feed,
    FeedError,
    FeedStatusBoard,
    Instrument,
    Quote,
    Venue,
    wall_ms,
)

logger = logging.getLogger(__name__)

DOWN_AFTER_FAILURES = 3
HISTORY_LIMIT = 1000
UPDATES_LIMIT = 100_000  # streamed updates kept for a recorder between two of its reads

# What a venue can stream, and the state of one stream.
BOOK, TICKER, BAR = "book", "ticker", "bar"
CONNECTING, LIVE, RESYNCING, STREAM_DOWN = "connecting", "live", "resyncing", "down"

# Unified methods that touch an account or an order; the feed makes each of them raise.
ACCOUNT_METHODS = (
    "create_order", "create_orders", "create_market_order", "create_limit_order", "create_market_buy_order",
    "create_market_sell_order", "create_limit_buy_order", "create_limit_sell_order", "create_stop_order",
    "edit_order", "cancel_order", "cancel_orders", "cancel_all_orders", "fetch_balance", "fetch_order",
    "fetch_orders", "fetch_open_orders", "fetch_closed_orders", "fetch_my_trades", "fetch_positions",
    "withdraw", "transfer", "fetch_deposit_address", "fetch_deposits", "fetch_withdrawals", "fetch_ledger",
    "set_leverage", "set_margin_mode",
    # ccxt.pro's private streams and WebSocket order methods
    "watch_balance", "watch_orders", "watch_my_trades", "watch_positions", "create_order_ws", "edit_order_ws",
    "cancel_order_ws", "cancel_orders_ws", "cancel_all_orders_ws", "fetch_balance_ws", "fetch_order_ws",
    "fetch_orders_ws", "fetch_open_orders_ws", "fetch_closed_orders_ws", "fetch_my_trades_ws", "fetch_positions_ws",
)


@dataclass(frozen=True)
class Backoff:
    """Reconnect delays: doubling from `base_s` up to `cap_s`, each drawn from its upper
    half (jitter), so workers that lost a venue together do not reconnect in step."""

    base_s: float = 0.5
    cap_s: float = 30.0

    def nominal(self, failures: int) -> float:
        return min(self.cap_s, self.base_s * 2 ** max(0, failures - 1))

    def delay(self, failures: int, rng: random.Random | None = None) -> float:
        nominal = self.nominal(failures)
        return (rng or random).uniform(nominal / 2, nominal)


@dataclass
class StreamState:
    """One followed stream: (venue, symbol, book or ticker), or (venue, symbol, bar, timeframe)."""

    venue: str
    symbol: str
    channel: str
    timeframe: str = ""  # bars only
    state: str = CONNECTING
    failures: int = 0  # in a row, since it last delivered
    resyncs: int = 0  # gaps the venue's sequence showed, each resynced from a snapshot
    updates: int = 0
    last_error: str = ""
    delays: list[float] = field(default_factory=list)  # the last reconnect delays chosen, latest last

    def as_dict(self) -> dict:
        return {"venue": self.venue, "symbol": self.symbol, "channel": self.channel, "timeframe": self.timeframe,
                "state": self.state, "failures": self.failures, "resyncs": self.resyncs, "updates": self.updates,
                "last_error": self.last_error, "delays": list(self.delays)}


class PaperOnlyError(FeedError):
    """Raised by anything that would reach an account: this desk never trades for real."""


def _refuse(name):
    async def refuse(*args, **kwargs):
        raise PaperOnlyError(f"{name} is not available: Trifecta is a paper desk and uses public market data only")

    return refuse


def _decimal(value) -> Decimal | None:
    if value is None:
        return None
    return Decimal(str(value))


def _bar(row) -> Bar:
    """A ccxt candle [ts, open, high, low, close, volume] as a Bar of Decimals."""
    return Bar(int(row[0]), _decimal(row[1]), _decimal(row[2]), _decimal(row[3]), _decimal(row[4]), _decimal(row[5]))


@dataclass
class _VenueCache:
    markets_loaded: bool = False
    symbols: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quotes: dict[str, Quote] = field(default_factory=dict)
    history: dict[str, list[Quote]] = field(default_factory=dict)
    books: dict[str, Book] = field(default_factory=dict)
    bars: dict[tuple[str, str], list[Bar]] = field(default_factory=dict)  # completed bars only, by ts
    forming: dict[tuple[str, str], Bar] = field(default_factory=dict)  # a bar stream's latest candle: never served
    bars_fetched_at: dict[tuple[str, str], int] = field(default_factory=dict)
    failures: int = 0


class CcxtFeed(Feed):
    name = "ccxt"

    def __init__(self, venues, symbols, timeout_ms: int = 10_000, urls: dict[str, str] | None = None,
                 book_depth: int = 20, timeframes=("1m",), exchange_options: dict | None = None,
                 min_refresh_ms: int = 1000, stream_venues=(), backoff: Backoff | None = None,
                 keep_updates: bool = False):
        """`stream_venues`: venues to follow by stream where ccxt offers one (`*`: all);
        `keep_updates`: keep every streamed quote and book for `streamed_updates()` (the recorder)."""
        import ccxt.async_support as ccxt_async
        import ccxt.pro as ccxt_pro

        self._ccxt = ccxt_async
        self._ccxt_pro = ccxt_pro
        stream_venues = set(stream_venues)
        self.stream_venues = {v for v in venues if ("*" in stream_venues or v in stream_venues) and v in ccxt_pro.exchanges}
        self.backoff = backoff or Backoff()
        self._streams: dict[tuple[str, str, str, str], StreamState] = {}
        self._tasks: list[asyncio.Task] = []
        self._updates: deque | None = deque(maxlen=UPDATES_LIMIT) if keep_updates else None
        self.venue_names = list(venues)
        self.wanted = list(symbols)
        self.timeout_ms = timeout_ms
        self.book_depth = book_depth
        self.timeframes = tuple(timeframes)
        self.board = FeedStatusBoard()
        self.min_refresh_ms = min_refresh_ms
        self._refreshed_at = None
        self._cache = {venue: _VenueCache() for venue in self.venue_names}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="ccxt-feed", daemon=True)
        self._thread.start()
        self._exchanges = {}
        for venue in self.venue_names:
            if venue not in ccxt_async.exchanges:
                self.board.mark_error(venue, DOWN, f"unknown venue {venue!r}: not a ccxt exchange id")
                continue
            options = {"enableRateLimit": True, "timeout": timeout_ms}
            options.update((exchange_options or {}).get(venue, {}))
            if venue.startswith("binance"):
                options.setdefault("options", {})["fetchMarkets"] = {"types": ["spot"]}
            exchange = self._call(self._make_exchange(venue, options, (urls or {}).get(venue)))
            self._exchanges[venue] = exchange
            self.board.get(venue).detail = "not polled yet"

    # construction and guards ------------------------------------------------
    async def _make_exchange(self, venue: str, options: dict, base_url: str | None):
        module = self._ccxt_pro if venue in self.stream_venues else self._ccxt  # a pro exchange is the async one plus streams
        exchange = getattr(module, venue)(options)
        if exchange.apiKey or exchange.secret or exchange.password or exchange.uid:
            await exchange.close()
            raise PaperOnlyError(f"{venue}: exchange credentials are set; the desk refuses to use them")
        for name in ACCOUNT_METHODS:
            head, *words = name.split("_")
            for alias in (name, head + "".join(w.title() for w in words)):  # ccxt answers to both spellings
                setattr(exchange, alias, _refuse(f"{venue}.{alias}"))
        fetch2 = exchange.fetch2

        async def public_only(path, api="public", method="GET", params=None, config=None):
            kind = api if isinstance(api, str) else "/".join(api)
            if "public" not in kind.lower() or method != "GET":
                raise PaperOnlyError(f"{venue}: {method} {kind} {path} is not a public market-data request")
            return await fetch2(path, api, method, params or {}, config or {})

        exchange.fetch2 = public_only
        if base_url:
            exchange.urls["api"] = _rebase(exchange.urls["api"], base_url)
        return exchange

    def _call(self, coroutine, timeout: float | None = None):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout)

    # polling ----------------------------------------------------------------
    def refresh(self, symbols: dict[str, list[str]] | None = None) -> bool:
        """Poll every venue at once; each venue's failure is recorded in its status only.

        Every task that reads the feed refreshes it first (each worker process has its own
        feed); calls within `min_refresh_ms` of the last poll reuse what it brought (False).
        """
        started = wall_ms()
        if self._refreshed_at is not None and started - self._refreshed_at < self.min_refresh_ms:
            return False
        self._refreshed_at = started
        bound = self.timeout_ms / 1000 * 4 + 5
        try:
            self._call(self._refresh_all(), timeout=bound)
        except TimeoutError:
            for venue in self._exchanges:
                self.board.mark_error(venue, DEGRADED, f"refresh took longer than {bound:.0f} s")
        return True

    async def _refresh_all(self):
        await asyncio.gather(*(self._refresh_venue(venue, exchange) for venue, exchange in self._exchanges.items()))

    async def _refresh_venue(self, venue: str, exchange) -> None:
        cache = self._cache[venue]
        try:
            if not cache.markets_loaded:
                await exchange.load_markets()
                cache.symbols = [s for s in self.wanted if s in exchange.markets]
                cache.missing = [s for s in self.wanted if s not in exchange.markets]
                cache.markets_loaded = True
            if not cache.symbols:
                raise FeedError(f"none of {', '.join(self.wanted)} is listed")
            self._start_streams(venue, exchange, cache)
            live = self._live(venue)
            polled_quotes = [s for s in cache.symbols if (s, TICKER, "") not in live and (s, BOOK, "") not in live]
            if polled_quotes:
                await self._fetch_quotes(venue, exchange, cache, polled_quotes)
        except Exception as exc:  # every venue failure is a status, never the desk's failure
            with self._lock:  # its polled books were not refreshed: none is served as current (quotes keep their age)
                for symbol in [s for s in cache.books if (s, BOOK, "") not in self._live(venue)]:
                    del cache.books[symbol]
            self._record_failure(venue, cache, exc)
            return
        streaming = venue in self.stream_venues and bool(self._streams_of(venue))
        now = wall_ms()
        results = await asyncio.gather(
            *(self._fetch_book(venue, exchange, cache, s) for s in cache.symbols if (s, BOOK, "") not in live),
            *(self._fetch_bars(exchange, cache, s, tf) for s in cache.symbols for tf in self.timeframes
              if not streaming or self._polls_bars(cache, s, tf, live, now)),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, Exception)]
        if errors:
            self._record_failure(venue, cache, errors[0], partial=True)
            return
        if cache.failures:
            logger.info("ccxt %s answers again", venue)
        cache.failures = 0
        detail = f"{len(cache.symbols)} symbols"
        if cache.missing:
            detail += f"; not listed: {', '.join(cache.missing)}"
        self.board.mark_ok(venue, detail + self._stream_detail(venue))

    def _polls_bars(self, cache: _VenueCache, symbol: str, timeframe: str, live: set, now: int) -> bool:
        """Whether a streamed venue asks REST for bars: at most once a bar period (when a new
        bar can have closed), and never while a live bar stream joins the history without a gap."""
        key, span = (symbol, timeframe), TIMEFRAME_MS[timeframe]
        fetched = cache.bars_fetched_at.get(key)
        if fetched is not None and fetched // span == now // span:
            return False
        if (symbol, BAR, timeframe) not in live:
            return True
        with self._lock:  # the stream began after the history ended (a late connect or a reconnect): REST fills in
            forming, history = cache.forming.get(key), cache.bars.get(key, [])
            return forming is not None and (not history or history[-1].ts < forming.ts - span)

    def _record_failure(self, venue: str, cache: _VenueCache, exc: Exception, partial: bool = False) -> None:
        cache.failures += 1
        state = DOWN if cache.failures >= DOWN_AFTER_FAILURES and not partial else DEGRADED
        if not cache.markets_loaded:
            state = DOWN if cache.failures >= DOWN_AFTER_FAILURES else DEGRADED
        message = f"{type(exc).__name__}: {str(exc)[:300]}"
        self.board.mark_error(venue, state, message)
        if cache.failures == 1:  # one line when a venue stops answering, one when it answers again
            logger.warning("ccxt %s: %s (said once until it answers again)", venue, message)

    async def _fetch_quotes(self, venue, exchange, cache: _VenueCache, symbols: list[str]) -> None:
        received = wall_ms()
        if exchange.has.get("fetchTickers"):
            tickers = await exchange.fetch_tickers(symbols)
        else:
            tickers = {s: await exchange.fetch_ticker(s) for s in symbols}
        missing = [s for s in symbols if not (tickers or {}).get(s)]
        if missing:
            raise FeedError(f"the venue's answer had no ticker for {', '.join(missing)} (unparseable or partial response)")
        for symbol in symbols:
            self._store_quote(venue, cache, symbol, tickers[symbol], received)

    def _store_quote(self, venue: str, cache: _VenueCache, symbol: str, ticker: dict, received: int,
                     streamed: bool = False) -> None:
        ts = ticker.get("timestamp") or received
        self._keep_quote(cache, Quote(
            venue, symbol, min(ts, received), _decimal(ticker.get("bid")), _decimal(ticker.get("ask")),
            _decimal(ticker.get("bidVolume")), _decimal(ticker.get("askVolume")),
        ), streamed)

    def _keep_quote(self, cache: _VenueCache, quote: Quote, streamed: bool) -> None:
        with self._lock:
            previous = cache.quotes.get(quote.symbol)
            if previous is None or (previous.ts, previous.bid, previous.ask) != (quote.ts, quote.bid, quote.ask):
                history = cache.history.setdefault(quote.symbol, [])
                history.append(quote)
                del history[:-HISTORY_LIMIT]
            cache.quotes[quote.symbol] = quote
            if streamed and self._updates is not None:
                self._updates.append(quote)

    async def _fetch_book(self, venue, exchange, cache: _VenueCache, symbol: str) -> None:
        received = wall_ms()
        try:
            raw = await exchange.fetch_order_book(symbol, self.book_depth)
        except Exception:
            with self._lock:  # a failed refresh must not leave the last book served as the current one
                cache.books.pop(symbol, None)
            raise
        self._store_book(venue, cache, symbol, raw, received)

    def _store_book(self, venue: str, cache: _VenueCache, symbol: str, raw: dict, received: int,
                    streamed: bool = False) -> Book:
        """A book stamped with its last update (the venue's time, never after it arrived here)."""
        ts = raw.get("timestamp") or received
        book = Book(
            venue, symbol, min(ts, received),
            tuple((_decimal(level[0]), _decimal(level[1])) for level in raw.get("bids", [])[:self.book_depth]),
            tuple((_decimal(level[0]), _decimal(level[1])) for level in raw.get("asks", [])[:self.book_depth]),
        )
        with self._lock:
            cache.books[symbol] = book
            if streamed and self._updates is not None:
                self._updates.append(book)
        return book

    async def _fetch_bars(self, exchange, cache: _VenueCache, symbol: str, timeframe: str) -> None:
        rows = await exchange.fetch_ohlcv(symbol, timeframe, limit=200)
        now = wall_ms()
        span = TIMEFRAME_MS[timeframe]
        with self._lock:
            self._keep_bars(cache, (symbol, timeframe), [_bar(r) for r in rows if int(r[0]) + span <= now])
            cache.bars_fetched_at[(symbol, timeframe)] = now

    def _store_streamed_bars(self, cache: _VenueCache, key: tuple[str, str], rows: list) -> None:
        """Candles from a bar stream: the latest one is forming (the venue may still send its
        closing update); a candle is completed once a later one has arrived."""
        completed = []
        with self._lock:
            forming = cache.forming.get(key)
            for bar in sorted((_bar(r) for r in rows), key=lambda b: b.ts):
                if forming is None or bar.ts >= forming.ts:
                    if forming is not None and bar.ts > forming.ts:
                        completed.append(forming)
                    forming = bar
                else:  # an update of an earlier candle: its period is over
                    completed.append(bar)
            cache.forming[key] = forming
            if completed:
                self._keep_bars(cache, key, completed)

    @staticmethod
    def _keep_bars(cache: _VenueCache, key: tuple[str, str], bars: list[Bar]) -> None:
        """Merge completed bars into the history by open time (the later answer wins); under the lock."""
        merged = {b.ts: b for b in cache.bars.get(key, [])}
        merged.update((b.ts, b) for b in bars)
        cache.bars[key] = [merged[ts] for ts in sorted(merged)][-HISTORY_LIMIT:]

    # streaming --------------------------------------------------------------
    def _start_streams(self, venue: str, exchange, cache: _VenueCache) -> None:
        """Follow each symbol's order book where the venue streams books (its top is the quote:
        one update, one age), else its ticker where it streams those; and its bars of each
        timeframe where it streams candles (once, after markets load)."""
        if venue not in self.stream_venues or self._streams_of(venue):
            return
        followed = []
        if exchange.has.get("watchOrderBook") and self.book_depth:
            followed += [(symbol, BOOK, "") for symbol in cache.symbols]
        elif exchange.has.get("watchTicker"):
            followed += [(symbol, TICKER, "") for symbol in cache.symbols]
        if exchange.has.get("watchOHLCV"):
            followed += [(symbol, BAR, tf) for symbol in cache.symbols for tf in self.timeframes
                         if tf in (exchange.timeframes or {})]
        for symbol, channel, timeframe in followed:
            stream = self._streams[(venue, symbol, channel, timeframe)] = StreamState(venue, symbol, channel, timeframe)
            self._tasks.append(asyncio.ensure_future(self._follow(stream, exchange)))

    async def _follow(self, stream: StreamState, exchange) -> None:
        """Keep one stream going: store each update; after a failure drop what it served and
        reconnect after a backoff (REST serves meanwhile); a sequence gap resyncs at once."""
        cache = self._cache[stream.venue]
        while True:
            try:
                if stream.channel == BOOK:
                    # no limit: a book kept at our depth would lose its deeper levels as the top ones go
                    raw = await exchange.watch_order_book(stream.symbol)
                    book = self._store_book(stream.venue, cache, stream.symbol, raw, wall_ms(), streamed=True)
                    if book.bids or book.asks:
                        self._keep_quote(cache, book.top(), streamed=True)
                elif stream.channel == BAR:
                    rows = await exchange.watch_ohlcv(stream.symbol, stream.timeframe)
                    self._store_streamed_bars(cache, (stream.symbol, stream.timeframe), rows)
                else:
                    ticker = await exchange.watch_ticker(stream.symbol)
                    if ticker.get("bid") is None and ticker.get("ask") is None:
                        raise FeedError("the ticker stream carries no bid or ask (REST serves the quotes)")
                    self._store_quote(stream.venue, cache, stream.symbol, ticker, wall_ms(), streamed=True)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a stream's failure is its venue's status, never the desk's failure
                delay = self._stream_failed(stream, cache, exc)
                if delay:
                    await asyncio.sleep(delay)
                continue
            if stream.state != LIVE:
                if stream.failures:
                    logger.info("ccxt %s %s %s stream is live again", stream.venue, stream.symbol, stream.channel)
                stream.state, stream.failures = LIVE, 0
            stream.updates += 1

    def _stream_failed(self, stream: StreamState, cache: _VenueCache, exc: Exception) -> float:
        """Record a stream's failure; returns how long to wait before following it again."""
        if stream.channel == BOOK:
            with self._lock:  # a book no stream maintains is not served as current: REST takes over
                cache.books.pop(stream.symbol, None)
        elif stream.channel == BAR:
            with self._lock:  # its forming candle may never get its closing update; REST serves the bars
                cache.forming.pop((stream.symbol, stream.timeframe), None)
                if stream.state == LIVE:  # it may have missed a bar's close: the next refresh asks REST
                    cache.bars_fetched_at.pop((stream.symbol, stream.timeframe), None)
        stream.last_error = f"{type(exc).__name__}: {str(exc)[:300]}"
        gap = isinstance(exc, (self._ccxt.ChecksumError, self._ccxt.InvalidNonce))
        if gap and stream.state == LIVE:  # the venue's sequence skipped: ccxt resubscribes and loads a snapshot
            stream.state = RESYNCING
            stream.resyncs += 1
            logger.info("ccxt %s %s book: sequence gap, resyncing from a snapshot", stream.venue, stream.symbol)
            return 0.0
        stream.state = STREAM_DOWN
        stream.failures += 1
        delay = self.backoff.delay(stream.failures)
        stream.delays.append(delay)
        del stream.delays[:-10]
        if stream.failures == 1:  # one line when a stream drops, one when it is live again
            logger.warning("ccxt %s %s %s stream down: %s (REST polls meanwhile; said once)", stream.venue,
                           stream.symbol, stream.channel, stream.last_error)
        return delay

    def _streams_of(self, venue: str) -> list[StreamState]:
        return [s for s in self._streams.values() if s.venue == venue]

    def _live(self, venue: str) -> set[tuple[str, str, str]]:
        """(symbol, channel, timeframe) of what a live stream serves for `venue` (timeframe "" but for bars)."""
        return {(s.symbol, s.channel, s.timeframe) for s in self._streams_of(venue) if s.state == LIVE}

    def _stream_detail(self, venue: str) -> str:
        streams = self._streams_of(venue)
        if venue not in self.stream_venues:
            return ""
        if not streams:
            return "; no stream offered: REST polling"
        down = [s for s in streams if s.state != LIVE]
        streaming = sorted({s.channel + "s" for s in streams} - {s.channel + "s" for s in down})
        parts = [f"streaming {', '.join(streaming)}"] if streaming else []
        if down:
            reason = next((s.last_error for s in down if s.last_error), "connecting")
            parts.append(f"{len(down)} of {len(streams)} streams not live ({reason}): REST polls them")
        return "; " + "; ".join(parts)

    def streams(self) -> list[dict]:
        """Every followed stream's state, for status pages and tests."""
        return [s.as_dict() for s in self._streams.values()]

    def streamed_updates(self) -> list[Quote | Book]:
        with self._lock:
            if not self._updates:
                return []
            updates = list(self._updates)
            self._updates.clear()
        return updates

    # the Feed interface -----------------------------------------------------
    def venues(self) -> dict[str, Venue]:
        return {venue: Venue(venue, "crypto", self.taker_fee(venue)) for venue in self._exchanges}

    def taker_fee(self, venue: str, symbol: str | None = None) -> Decimal:
        exchange = self._exchanges[venue]
        market = exchange.markets.get(symbol) if (symbol and exchange.markets) else None
        if market and market.get("taker") is not None:
            return _decimal(market["taker"])
        return _decimal(exchange.fees.get("trading", {}).get("taker")) or Decimal("0")

    def market_rules(self, venue: str, symbol: str) -> dict:
        """The venue's precision and minimums for a symbol, as Decimals (None where unknown)."""
        market = (self._exchanges[venue].markets or {}).get(symbol) or {}
        precision, limits = market.get("precision", {}), market.get("limits", {})
        return {
            "amount_step": _decimal(precision.get("amount")),
            "price_tick": _decimal(precision.get("price")),
            "min_amount": _decimal(limits.get("amount", {}).get("min")),
            "min_cost": _decimal(limits.get("cost", {}).get("min")),
        }

    def instruments(self) -> list[Instrument]:
        return [
            Instrument(venue, symbol, "crypto", has_quotes=True, has_books=True, timeframes=self.timeframes)
            for venue in self._exchanges
            for symbol in self._cache[venue].symbols
        ]

    def now(self) -> int:
        return wall_ms()

    def quote(self, venue: str, symbol: str) -> Quote | None:
        cache = self._cache.get(venue)
        return cache.quotes.get(symbol) if cache else None

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        cache = self._cache.get(venue)
        with self._lock:
            history = list(cache.history.get(symbol, [])) if cache else []
        return [q for q in history if q.ts > since]

    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        cache = self._cache.get(venue)
        book = cache.books.get(symbol) if cache else None
        if book is None or depth is None:
            return book
        return Book(book.venue, book.symbol, book.ts, book.bids[:depth], book.asks[:depth])

    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        """Completed bars only (open time + timeframe <= now): a forming bar would show a close from the future."""
        cache = self._cache.get(venue)
        with self._lock:
            bars = cache.bars.get((symbol, timeframe), []) if cache else []
        if not bars or limit <= 0:
            return []
        end = wall_ms() - TIMEFRAME_MS[timeframe]
        return [b for b in bars if b.ts <= end][-limit:]

    def status(self):
        return self.board.all()

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def close_all():
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            for exchange in self._exchanges.values():
                await exchange.close()

        try:
            self._call(close_all(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def _rebase(api_urls, base_url: str):
    """Point every API URL of an exchange at `base_url`, keeping each URL's path; its
    WebSocket URLs too, at the same host with the ws scheme (wss for an https base)."""
    if isinstance(api_urls, dict):
        return {key: _rebase(value, base_url) for key, value in api_urls.items()}
    if isinstance(api_urls, str) and api_urls.startswith("http"):
        return base_url.rstrip("/") + urlparse(api_urls).path
    if isinstance(api_urls, str) and api_urls.startswith("ws"):
        return "ws" + base_url.rstrip("/").removeprefix("http") + urlparse(api_urls).path
    return api_urls



def probe(venues, symbols, *, timeout_s: float = 4.0, urls: dict[str, str] | None = None) -> dict[str, dict]:
    """Ask each venue once for its markets and tickers: {venue: {"state", "detail"}}.

    `manage.py run` calls this (in a child process: only scan workers import ccxt) to
    decide between live data and the demo recording; a venue is live when it answered.
    """
    feed = CcxtFeed(venues=venues, symbols=symbols, timeout_ms=int(timeout_s * 1000), urls=urls, timeframes=())
    try:
        feed.refresh()
        return {s.venue: {"state": s.state, "detail": s.last_error if s.state != "ok" else s.detail} for s in feed.status()}
    finally:
        feed.close()


if __name__ == "__main__":  # python -m scanners.feeds.exchanges VENUES SYMBOLS TIMEOUT_S [URLS as venue=url,...]
    import json
    import sys

    logging.basicConfig(level=logging.ERROR)
    urls = dict(item.split("=", 1) for item in (sys.argv[4] if len(sys.argv) > 4 else "").split(",") if "=" in item)
    print(json.dumps(probe(sys.argv[1].split(","), sys.argv[2].split(","), timeout_s=float(sys.argv[3]), urls=urls)))
