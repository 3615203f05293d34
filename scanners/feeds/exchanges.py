"""The ccxt feed: public market data of many venues at once. Paper only.

One asyncio loop, owned by the feed in a thread of its own, runs ccxt's async
exchanges with their rate limiting; `refresh()` (called from sync Celery tasks) polls
every venue concurrently and caches what came back. Markets load once per venue.

Guards, so no code path can trade or touch an account: an exchange with credentials is
refused, the unified account and order methods are replaced by ones that raise, and
every HTTP request is checked to go to a public endpoint before ccxt sends it.

ccxt returns floats; each is turned into a `Decimal` through `str()`, whose shortest
round-trip form is the venue's decimal text for the prices venues publish.
"""
from __future__ import annotations

import asyncio
import logging
import threading
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

# Unified methods that touch an account or an order; the feed makes each of them raise.
ACCOUNT_METHODS = (
    "create_order", "create_orders", "create_market_order", "create_limit_order", "create_market_buy_order",
    "create_market_sell_order", "create_limit_buy_order", "create_limit_sell_order", "create_stop_order",
    "edit_order", "cancel_order", "cancel_orders", "cancel_all_orders", "fetch_balance", "fetch_order",
    "fetch_orders", "fetch_open_orders", "fetch_closed_orders", "fetch_my_trades", "fetch_positions",
    "withdraw", "transfer", "fetch_deposit_address", "fetch_deposits", "fetch_withdrawals", "fetch_ledger",
    "set_leverage", "set_margin_mode",
)


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


@dataclass
class _VenueCache:
    markets_loaded: bool = False
    symbols: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    quotes: dict[str, Quote] = field(default_factory=dict)
    history: dict[str, list[Quote]] = field(default_factory=dict)
    books: dict[str, Book] = field(default_factory=dict)
    bars: dict[tuple[str, str], list[Bar]] = field(default_factory=dict)
    failures: int = 0


class CcxtFeed(Feed):
    name = "ccxt"

    def __init__(self, venues, symbols, timeout_ms: int = 10_000, urls: dict[str, str] | None = None,
                 book_depth: int = 20, timeframes=("1m",), exchange_options: dict | None = None,
                 min_refresh_ms: int = 1000):
        import ccxt.async_support as ccxt_async

        self._ccxt = ccxt_async
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
        exchange = getattr(self._ccxt, venue)(options)
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
            await self._fetch_quotes(venue, exchange, cache)
        except Exception as exc:  # every venue failure is a status, never the desk's failure
            with self._lock:  # its books were not refreshed: none is served as current (quotes keep their age)
                cache.books.clear()
            self._record_failure(venue, cache, exc)
            return
        results = await asyncio.gather(
            *(self._fetch_book(venue, exchange, cache, s) for s in cache.symbols),
            *(self._fetch_bars(exchange, cache, s, tf) for s in cache.symbols for tf in self.timeframes),
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
        self.board.mark_ok(venue, detail)

    def _record_failure(self, venue: str, cache: _VenueCache, exc: Exception, partial: bool = False) -> None:
        cache.failures += 1
        state = DOWN if cache.failures >= DOWN_AFTER_FAILURES and not partial else DEGRADED
        if not cache.markets_loaded:
            state = DOWN if cache.failures >= DOWN_AFTER_FAILURES else DEGRADED
        message = f"{type(exc).__name__}: {str(exc)[:300]}"
        self.board.mark_error(venue, state, message)
        if cache.failures == 1:  # one line when a venue stops answering, one when it answers again
            logger.warning("ccxt %s: %s (said once until it answers again)", venue, message)

    async def _fetch_quotes(self, venue, exchange, cache: _VenueCache) -> None:
        received = wall_ms()
        if exchange.has.get("fetchTickers"):
            tickers = await exchange.fetch_tickers(cache.symbols)
        else:
            tickers = {s: await exchange.fetch_ticker(s) for s in cache.symbols}
        missing = [s for s in cache.symbols if not (tickers or {}).get(s)]
        if missing:
            raise FeedError(f"the venue's answer had no ticker for {', '.join(missing)} (unparseable or partial response)")
        with self._lock:
            for symbol in cache.symbols:
                ticker = tickers[symbol]
                ts = ticker.get("timestamp") or received
                quote = Quote(
                    venue, symbol, min(ts, received), _decimal(ticker.get("bid")), _decimal(ticker.get("ask")),
                    _decimal(ticker.get("bidVolume")), _decimal(ticker.get("askVolume")),
                )
                previous = cache.quotes.get(symbol)
                if previous is None or (previous.ts, previous.bid, previous.ask) != (quote.ts, quote.bid, quote.ask):
                    history = cache.history.setdefault(symbol, [])
                    history.append(quote)
                    del history[:-HISTORY_LIMIT]
                cache.quotes[symbol] = quote

    async def _fetch_book(self, venue, exchange, cache: _VenueCache, symbol: str) -> None:
        received = wall_ms()
        try:
            raw = await exchange.fetch_order_book(symbol, self.book_depth)
        except Exception:
            with self._lock:  # a failed refresh must not leave the last book served as the current one
                cache.books.pop(symbol, None)
            raise
        ts = raw.get("timestamp") or received
        book = Book(
            venue, symbol, min(ts, received),
            tuple((_decimal(level[0]), _decimal(level[1])) for level in raw.get("bids", [])),
            tuple((_decimal(level[0]), _decimal(level[1])) for level in raw.get("asks", [])),
        )
        with self._lock:
            cache.books[symbol] = book

    async def _fetch_bars(self, exchange, cache: _VenueCache, symbol: str, timeframe: str) -> None:
        rows = await exchange.fetch_ohlcv(symbol, timeframe, limit=200)
        now = wall_ms()
        span = TIMEFRAME_MS[timeframe]
        bars = [
            Bar(int(r[0]), _decimal(r[1]), _decimal(r[2]), _decimal(r[3]), _decimal(r[4]), _decimal(r[5]))
            for r in rows
            if int(r[0]) + span <= now
        ]
        with self._lock:
            cache.bars[(symbol, timeframe)] = bars

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
        cache = self._cache.get(venue)
        bars = cache.bars.get((symbol, timeframe), []) if cache else []
        return bars[-limit:] if limit > 0 else []

    def status(self):
        return self.board.all()

    def close(self) -> None:
        if self._loop.is_closed():
            return

        async def close_all():
            for exchange in self._exchanges.values():
                await exchange.close()

        try:
            self._call(close_all(), timeout=10)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
            self._loop.close()


def _rebase(api_urls, base_url: str):
    """Point every API URL of an exchange at `base_url`, keeping each URL's path."""
    if isinstance(api_urls, dict):
        return {key: _rebase(value, base_url) for key, value in api_urls.items()}
    if isinstance(api_urls, str) and api_urls.startswith("http"):
        return base_url.rstrip("/") + urlparse(api_urls).path
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
