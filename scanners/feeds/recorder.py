"""Recording a live feed into the recording format, so it can be replayed identically.

A quote row is written when the top of book changes, a book snapshot when the book
changes, and each completed bar once. A streaming feed's updates between two polls are
each written too (`Feed.streamed_updates`), not only the last one a poll sees. Stopping early (Ctrl-C) still closes every file
and writes the manifest, so what was recorded is a valid recording.
"""
from __future__ import annotations

import time

from .base import Book, Feed, wall_ms
from .recording import RecordingWriter


def record(feed: Feed, *, venues: list[str], symbols: list[str], duration_ms: int, out, book_depth: int = 20,
           interval_ms: int = 1000, timeframes: tuple[str, ...] = ("1m",), name: str | None = None,
           sleep=time.sleep, on_poll=None) -> dict:
    """Poll `feed` every `interval_ms` for `duration_ms` and write what changed; returns counts."""
    known = feed.venues()
    writer = RecordingWriter(
        out,
        name=name or f"recorded-{wall_ms()}",
        venues={v: known[v] for v in venues if v in known},
        description=f"Recorded from the {feed.name} feed: {', '.join(symbols)} at {', '.join(venues)}",
        source=f"trifecta record --feed {feed.name}",
    )
    last_quote, last_book, last_bar = {}, {}, {}
    counts = {"polls": 0, "quotes": 0, "books": 0, "bars": 0}
    wanted = {(v, s) for v in venues for s in symbols}

    def write_quote(quote):
        key = (quote.venue, quote.symbol)
        if quote != last_quote.get(key) and (last_quote.get(key) is None or quote.ts >= last_quote[key].ts):
            writer.write_quote(quote)
            counts["quotes"] += 1
            last_quote[key] = quote

    def write_book(book):
        key, previous = (book.venue, book.symbol), last_book.get((book.venue, book.symbol))
        if previous is None or (book.bids, book.asks) != (previous.bids, previous.asks):
            if previous is None or book.ts >= previous.ts:
                writer.write_book(book)
                counts["books"] += 1
                last_book[key] = book

    deadline = time.monotonic() + duration_ms / 1000
    try:
        while True:
            feed.refresh()
            counts["polls"] += 1
            for update in feed.streamed_updates():
                if (update.venue, update.symbol) not in wanted:
                    continue
                if isinstance(update, Book):
                    if book_depth:
                        write_book(Book(update.venue, update.symbol, update.ts, update.bids[:book_depth], update.asks[:book_depth]))
                else:
                    write_quote(update)
            for venue in venues:
                for symbol in symbols:
                    key = (venue, symbol)
                    quote = feed.quote(venue, symbol)
                    if quote is not None:
                        write_quote(quote)
                    if book_depth:
                        book = feed.book(venue, symbol, depth=book_depth)
                        if book is not None:
                            write_book(book)
                    for timeframe in timeframes:
                        for bar in feed.bars(venue, symbol, timeframe):
                            if bar.ts > last_bar.get((key, timeframe), -1):
                                writer.write_bar(venue, symbol, timeframe, bar)
                                counts["bars"] += 1
                                last_bar[(key, timeframe)] = bar.ts
            writer.flush()
            if on_poll is not None:
                on_poll(counts)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            sleep(min(interval_ms / 1000, remaining))
    except KeyboardInterrupt:
        counts["interrupted"] = True
    finally:
        writer.close()
    return counts
