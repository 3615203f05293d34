"""The recording format (trifecta-recording/1, see README and shared/RECORDING.md).

Names and the writer live here; the reader is `replay.RecordingReader`. The recorder
writes through `RecordingWriter`, so what it writes is what the replay feed reads.
"""
from __future__ import annotations

import csv
import json
from decimal import Decimal
from pathlib import Path

from .base import Bar, Book, Quote, Venue

FORMAT = "trifecta-recording/1"
QUOTE_HEADER = ["ts", "bid", "ask", "bid_size", "ask_size"]
BAR_HEADER = ["ts", "open", "high", "low", "close", "volume"]


def symbol_to_filename(symbol: str) -> str:
    """`BTC/USDT` -> `BTC-USDT`; `BTC/USDT:USDT` -> `BTC-USDT_USDT`."""
    return symbol.replace("/", "-").replace(":", "_")


def filename_to_symbol(stem: str) -> str:
    """Inverse of `symbol_to_filename` (the stem has no extension and no `@timeframe`)."""
    base, _, rest = stem.partition("-")
    quote, _, settle = rest.partition("_")
    return f"{base}/{quote}:{settle}" if settle else f"{base}/{quote}"


def decimal_text(value: Decimal | None) -> str:
    """A decimal as the format wants it: plain notation, empty for unknown."""
    if value is None:
        return ""
    return format(value, "f")


class RecordingWriter:
    """Appends quotes, books and bars to a recording directory; `close()` writes the manifest.

    Rows must arrive in ascending `ts` per file (the recorder writes as it observes).
    """

    def __init__(self, path, *, name: str, venues: dict[str, Venue], description: str = "", source: str = ""):
        self.path = Path(path)
        self.name = name
        self.venues = venues
        self.description = description
        self.source = source
        self.start: int | None = None
        self.end: int | None = None
        self._files: dict[Path, tuple] = {}
        self.path.mkdir(parents=True, exist_ok=True)

    def _seen(self, ts: int) -> None:
        self.start = ts if self.start is None else min(self.start, ts)
        self.end = ts if self.end is None else max(self.end, ts)

    def _csv(self, path: Path, header: list[str]):
        if path not in self._files:
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("w", newline="", encoding="utf-8")
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(header)
            self._files[path] = (handle, writer)
        return self._files[path][1]

    def write_quote(self, quote: Quote) -> None:
        path = self.path / "quotes" / quote.venue / f"{symbol_to_filename(quote.symbol)}.csv"
        self._csv(path, QUOTE_HEADER).writerow(
            [quote.ts] + [decimal_text(v) for v in (quote.bid, quote.ask, quote.bid_size, quote.ask_size)]
        )
        self._seen(quote.ts)

    def write_bar(self, venue: str, symbol: str, timeframe: str, bar: Bar) -> None:
        path = self.path / "bars" / venue / f"{symbol_to_filename(symbol)}@{timeframe}.csv"
        self._csv(path, BAR_HEADER).writerow(
            [bar.ts] + [decimal_text(v) for v in (bar.open, bar.high, bar.low, bar.close, bar.volume)]
        )
        self._seen(bar.ts)

    def write_book(self, book: Book) -> None:
        path = self.path / "books" / book.venue / f"{symbol_to_filename(book.symbol)}.jsonl"
        if path not in self._files:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._files[path] = (path.open("w", encoding="utf-8"), None)
        line = {
            "ts": book.ts,
            "bids": [[decimal_text(p), decimal_text(s)] for p, s in book.bids],
            "asks": [[decimal_text(p), decimal_text(s)] for p, s in book.asks],
        }
        self._files[path][0].write(json.dumps(line) + "\n")
        self._seen(book.ts)

    def flush(self) -> None:
        for handle, _ in self._files.values():
            handle.flush()

    def close(self) -> None:
        for handle, _ in self._files.values():
            handle.close()
        self._files.clear()
        manifest = {
            "format": FORMAT,
            "name": self.name,
            "description": self.description,
            "source": self.source,
            "start": self.start,
            "end": self.end,
            "venues": {
                name: {"asset_class": venue.asset_class, "taker_fee": decimal_text(venue.taker_fee)}
                for name, venue in sorted(self.venues.items())
            },
        }
        (self.path / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
