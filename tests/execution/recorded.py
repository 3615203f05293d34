"""Tiny recordings written by a test, replayed through the real replay feed on a stepped clock."""
from decimal import Decimal as D

from scanners.feeds.base import Bar, Book, Quote, Venue
from scanners.feeds.recording import RecordingWriter
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed


def recorded_market(path, *, venues: dict, books=(), quotes=(), bars=(), at: int | None = None) -> ReplayFeed:
    """venues: name -> (asset_class, taker_fee); books: (venue, symbol, ts, bids, asks);
    quotes: (venue, symbol, ts, bid, ask); bars: (venue, symbol, timeframe, ts, open, high, low, close)."""
    writer = RecordingWriter(path, name="test", venues={n: Venue(n, a, D(f)) for n, (a, f) in venues.items()})
    for venue, symbol, ts, bids, asks in sorted(books, key=lambda b: b[2]):
        writer.write_book(Book(venue, symbol, ts, tuple((D(p), D(s)) for p, s in bids), tuple((D(p), D(s)) for p, s in asks)))
    for venue, symbol, ts, bid, ask in sorted(quotes, key=lambda q: q[2]):
        writer.write_quote(Quote(venue, symbol, ts, D(bid), D(ask)))
    for venue, symbol, timeframe, ts, *ohlc in sorted(bars, key=lambda b: b[3]):
        writer.write_bar(venue, symbol, timeframe, Bar(ts, *(D(v) for v in ohlc)))
    writer.close()
    reader = RecordingReader(path)
    return ReplayFeed(reader, ReplayClock.stepped(reader.start if at is None else at))
