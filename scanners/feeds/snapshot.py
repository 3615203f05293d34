"""The scan worker's view of a live market, shared with the desk workers through Redis.

Live feeds (ccxt, mt5) poll venues in the scan worker only: it is the one process that
imports ccxt and talks to venues, so N desk workers never multiply the requests a venue
sees. After each refresh the scan worker writes what it has into the cache: per
instrument the latest quote and book, the quotes of the last minutes and the latest bars,
plus the venues, instruments and venue rules. Desk workers (decide, execute, monitor)
read it through `SnapshotFeed`, the same `Feed` interface. A replay needs none of this:
every process reads the recording on a shared clock.
"""
from __future__ import annotations

from django.core.cache import cache

from .base import Bar, Book, Feed, FeedError, FeedStatus, Instrument, OK, Quote, Venue, wall_ms

KEY = "trifecta:market"
HISTORY_MS = 15 * 60_000
BARS = 100
TTL_S = 600
RELOAD_MS = 200


def _key(venue: str, symbol: str) -> str:
    return f"{KEY}:{venue}|{symbol}"


def publish_snapshot(feed: Feed) -> int:
    """Write the feed's current market into the cache; returns the number of instruments."""
    instruments = feed.instruments()
    now = feed.now()
    entries = {
        _key(i.venue, i.symbol): {
            "quote": feed.quote(i.venue, i.symbol),
            "book": feed.book(i.venue, i.symbol),
            "history": feed.quote_history(i.venue, i.symbol, now - HISTORY_MS),
            "bars": {timeframe: feed.bars(i.venue, i.symbol, timeframe, BARS) for timeframe in i.timeframes},
            "rules": feed.market_rules(i.venue, i.symbol),
        }
        for i in instruments
    }
    cache.set_many(entries, TTL_S)
    cache.set(f"{KEY}:catalog", {"feed": feed.name, "ts": now, "venues": feed.venues(), "instruments": instruments}, TTL_S)
    return len(instruments)


class SnapshotFeed(Feed):
    """The market as the scan worker last published it (reloaded at most every 200 ms)."""

    name = "snapshot"

    def __init__(self):
        self._catalog: dict | None = None
        self._entries: dict = {}
        self._loaded_at = 0

    def _load(self) -> None:
        if self._catalog is not None and wall_ms() - self._loaded_at < RELOAD_MS:
            return
        catalog = cache.get(f"{KEY}:catalog")
        if catalog is None:
            raise FeedError("no market snapshot yet: the scan worker publishes one after each poll")
        keys = [_key(i.venue, i.symbol) for i in catalog["instruments"]]
        self._catalog, self._entries, self._loaded_at = catalog, cache.get_many(keys), wall_ms()

    def _entry(self, venue: str, symbol: str) -> dict:
        self._load()
        return self._entries.get(_key(venue, symbol)) or {}

    def refresh(self, symbols=None) -> bool:
        self._loaded_at = 0
        return True

    def venues(self) -> dict[str, Venue]:
        self._load()
        return self._catalog["venues"]

    def instruments(self) -> list[Instrument]:
        self._load()
        return self._catalog["instruments"]

    def now(self) -> int:
        return wall_ms()

    def quote(self, venue: str, symbol: str) -> Quote | None:
        return self._entry(venue, symbol).get("quote")

    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        book = self._entry(venue, symbol).get("book")
        if book is None or depth is None:
            return book
        return Book(book.venue, book.symbol, book.ts, book.bids[:depth], book.asks[:depth])

    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        return self._entry(venue, symbol).get("bars", {}).get(timeframe, [])[-limit:] if limit > 0 else []

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        return [q for q in self._entry(venue, symbol).get("history", []) if q.ts > since]

    def market_rules(self, venue: str, symbol: str) -> dict:
        return self._entry(venue, symbol).get("rules") or {}

    def status(self) -> list[FeedStatus]:
        self._load()
        detail = f"{self._catalog['feed']} snapshot of {self._catalog['ts']}"
        return [FeedStatus(venue=name, state=OK, detail=detail) for name in sorted(self._catalog["venues"])]
