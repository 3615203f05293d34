"""A market held in memory, for scanner tests: quotes and books set by hand (a data fixture)."""
from decimal import Decimal

from scanners.feeds.base import Book, Feed, FeedStatus, Instrument, Quote, Venue

D = Decimal


class MemoryMarket(Feed):
    name = "memory"

    def __init__(self, now: int = 1_000_000, fees: dict | None = None, asset_class: str = "crypto"):
        self._now = now
        self.fees = {k: D(v) for k, v in (fees or {}).items()}
        self.asset_class = asset_class
        self.quotes: dict = {}
        self.books: dict = {}
        self.bar_series: dict = {}

    def set_quote(self, venue, symbol, bid, ask, bid_size=None, ask_size=None, ts=None):
        self.quotes[(venue, symbol)] = Quote(
            venue, symbol, self._now if ts is None else ts, D(bid), D(ask),
            None if bid_size is None else D(bid_size), None if ask_size is None else D(ask_size),
        )

    def set_book(self, venue, symbol, bids, asks, ts=None):
        book = Book(venue, symbol, self._now if ts is None else ts,
                    tuple((D(p), D(s)) for p, s in bids), tuple((D(p), D(s)) for p, s in asks))
        self.books[(venue, symbol)] = book
        self.quotes[(venue, symbol)] = book.top()

    def venues(self):
        names = {v for v, _ in self.quotes} | set(self.fees)
        return {v: Venue(v, self.asset_class, self.fees.get(v, D(0))) for v in names}

    def instruments(self):
        return [Instrument(v, s, self.asset_class, has_quotes=True, has_books=(v, s) in self.books)
                for v, s in sorted(self.quotes)]

    def now(self):
        return self._now

    def quote(self, venue, symbol):
        return self.quotes.get((venue, symbol))

    def book(self, venue, symbol, depth=None):
        return self.books.get((venue, symbol))

    def bars(self, venue, symbol, timeframe, limit=100):
        return self.bar_series.get((venue, symbol, timeframe), [])[-limit:]

    def status(self):
        return [FeedStatus(v) for v in self.venues()]
