"""The replay feed: a recording (trifecta-recording/1) served as of a replay clock.

Opening a recording reads only its manifest and lists its folders, so a large recording
opens at once; each file is read and checked the first time something asks for it, and
kept as timestamps plus the raw text of each value: a value becomes a `Decimal` only
when it is returned. A malformed file raises `RecordingError` naming the file and line.

Real quirks are served as recorded: locked or crossed quotes come back as they are
(`Quote.crossed` says so), a missing bar is a gap, a partial day is partial.
"""
from __future__ import annotations

import bisect
import heapq
import json
import re
import time
from decimal import Decimal
from pathlib import Path
from typing import Iterator

from .base import (
    OK,
    TIMEFRAME_MS,
    Bar,
    Book,
    Feed,
    FeedStatus,
    Instrument,
    Quote,
    RecordingError,
    Venue,
    wall_ms,
)
from .recording import BAR_HEADER, FORMAT, QUOTE_HEADER, filename_to_symbol

NUMBER = re.compile(r"\d+(?:\.\d+)?")
TIMESTAMP = re.compile(r"-?\d+")
_VALUE = r"(?:\d+(?:\.\d+)?)"
# A whole body of well-formed rows: ts, then values (empty = unknown; bars need OHLC).
QUOTE_FILE = re.compile(rf"(?:-?\d+(?:,{_VALUE}?){{4}}\n)*(?:-?\d+(?:,{_VALUE}?){{4}}\n?)?")
BAR_FILE = re.compile(rf"(?:-?\d+(?:,{_VALUE}){{4}},{_VALUE}?\n)*(?:-?\d+(?:,{_VALUE}){{4}},{_VALUE}?\n?)?")
BOOK_TS = re.compile(rb'^\s*\{\s*"ts"\s*:\s*(-?\d+)')


def _check_number(path: Path, line: int, column: str, text: str) -> None:
    if text and not NUMBER.fullmatch(text):
        raise RecordingError(path, line, f"{column} is not a plain non-negative decimal: {text!r}")


class _Series:
    """One quotes or bars CSV: timestamps and raw value strings, loaded on first use."""

    def __init__(self, path: Path, header: list[str]):
        self.path = path
        self.header = header
        self._ts: list[int] | None = None
        self._rows: list[str] = []
        self._mids = None
        self._closes = None

    @property
    def ts(self) -> list[int]:
        if self._ts is None:
            self._load()
        return self._ts

    def row(self, index: int) -> tuple[str, ...]:
        """The raw values of one row, checked now: a bad value names its file and line."""
        if self._ts is None:
            self._load()
        fields = self._rows[index].split(",")
        if len(fields) != len(self.header) or not all(NUMBER.fullmatch(v) for v in fields[1:] if v):
            self._diagnose([self._rows[index]], first_line=index + 2)
        return tuple(fields[1:])

    def index_at(self, when: int) -> int:
        """Index of the latest row with ts <= when, or -1."""
        return bisect.bisect_right(self.ts, when) - 1

    def _load(self) -> None:
        """Read the timestamps of every row (and check their order); values are checked when served or by `validate()`."""
        try:
            text = self.path.read_bytes().decode("utf-8")
        except OSError as exc:
            raise RecordingError(self.path, None, f"cannot open: {exc.strerror}") from exc
        except UnicodeDecodeError as exc:
            raise RecordingError(self.path, None, f"not UTF-8 text: {exc}") from exc
        if "\r" in text:
            text = text.replace("\r\n", "\n")
        header, _, body = text.partition("\n")
        if header.split(",") != self.header:
            raise RecordingError(self.path, 1, f"header must be {','.join(self.header)}, found {header!r}")
        lines = body.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        try:
            ts = [int(line[: line.index(",")]) for line in lines]
        except ValueError:
            self._diagnose(lines)
        for index in range(1, len(ts)):
            if ts[index] < ts[index - 1]:
                raise RecordingError(self.path, index + 2, f"ts {ts[index]} is earlier than the row before ({ts[index - 1]})")
        self._rows = lines
        self._ts = ts

    def mid_arrays(self):
        """(ts, mid, usable) as numpy arrays, built once: usable rows have both sides and are not crossed."""
        if self._mids is None:
            import numpy as np

            if self._ts is None:
                self._load()
            bids = np.full(len(self._rows), np.nan)
            asks = np.full(len(self._rows), np.nan)
            for index, line in enumerate(self._rows):
                try:
                    _, bid, ask, _ = line.split(",", 3)
                    if bid and ask:
                        bids[index], asks[index] = float(bid), float(ask)
                except ValueError:
                    self.row(index)  # raises the RecordingError that names the line
                    raise
            with np.errstate(invalid="ignore"):
                usable = (bids < asks) & ~np.isnan(bids)
            self._mids = (np.array(self._ts, dtype=np.int64), (bids + asks) / 2, usable)
        return self._mids

    def close_arrays(self):
        """(open ts, close) of a bars file as numpy arrays, built once."""
        if self._closes is None:
            import numpy as np

            if self._ts is None:
                self._load()
            closes = np.empty(len(self._rows))
            for index, line in enumerate(self._rows):
                try:
                    closes[index] = float(line.split(",", 5)[4])
                except (ValueError, IndexError):
                    self.row(index)  # raises the RecordingError that names the line
                    raise
            self._closes = (np.array(self._ts, dtype=np.int64), closes)
        return self._closes

    def validate(self) -> int:
        """Check every row now (one regular expression over the file; the bad line is found if it fails)."""
        if self._ts is None:
            self._load()
        pattern = QUOTE_FILE if self.header is QUOTE_HEADER else BAR_FILE
        body = "\n".join(self._rows)
        if pattern.fullmatch(body + "\n" if body else body) is None:
            self._diagnose(self._rows)
        return len(self._ts)

    def _diagnose(self, lines: list[str], first_line: int = 2) -> None:
        width = len(self.header)
        for line_no, line in enumerate(lines, start=first_line):
            fields = line.split(",")
            if len(fields) != width:
                raise RecordingError(self.path, line_no, f"expected {width} columns, found {len(fields)}")
            if not TIMESTAMP.fullmatch(fields[0]):
                raise RecordingError(self.path, line_no, f"ts is not integer milliseconds: {fields[0]!r}")
            for column, value in zip(self.header[1:], fields[1:]):
                _check_number(self.path, line_no, column, value)
            if self.header is BAR_HEADER and "" in fields[1:5]:
                raise RecordingError(self.path, line_no, "a bar needs open, high, low and close")
        raise RecordingError(self.path, None, "malformed (no single line to blame)")


class _Books:
    """One books JSONL: the ts and byte offset of each snapshot; a line is parsed when asked for."""

    def __init__(self, path: Path):
        self.path = path
        self._ts: list[int] | None = None
        self._offsets: list[int] = []
        self._parsed: dict[int, tuple] = {}

    @property
    def ts(self) -> list[int]:
        if self._ts is None:
            self._index()
        return self._ts

    def index_at(self, when: int) -> int:
        return bisect.bisect_right(self.ts, when) - 1

    def _index(self) -> None:
        ts, offsets, previous, offset = [], [], None, 0
        with self.path.open("rb") as handle:
            for line_no, raw in enumerate(handle, start=1):
                if raw.strip():
                    match = BOOK_TS.match(raw)
                    if match:
                        stamp = int(match.group(1))
                    else:
                        stamp = self._parse_line(raw, line_no)[0]
                    if previous is not None and stamp < previous:
                        raise RecordingError(self.path, line_no, f"ts {stamp} is earlier than the line before ({previous})")
                    previous = stamp
                    ts.append(stamp)
                    offsets.append((offset, line_no))
                offset += len(raw)
        self._offsets = offsets
        self._ts = ts

    def validate(self) -> int:
        for index in range(len(self.ts)):
            self.snapshot(index)
        self._parsed.clear()
        return len(self.ts)

    def snapshot(self, index: int) -> tuple[int, list, list]:
        if index not in self._parsed:
            offset, line_no = self._offsets[index]
            with self.path.open("rb") as handle:
                handle.seek(offset)
                raw = handle.readline()
            self._parsed[index] = self._parse_line(raw, line_no)
        return self._parsed[index]

    def _parse_line(self, raw: bytes, line_no: int) -> tuple[int, list, list]:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordingError(self.path, line_no, f"not valid JSON: {exc}") from None
        if not isinstance(data, dict) or not isinstance(data.get("ts"), int):
            raise RecordingError(self.path, line_no, 'a snapshot is {"ts": <int ms>, "bids": [...], "asks": [...]}')
        sides = []
        for side in ("bids", "asks"):
            levels = data.get(side)
            if not isinstance(levels, list):
                raise RecordingError(self.path, line_no, f"{side} must be a list of [price, size]")
            parsed = []
            for level in levels:
                if not (isinstance(level, list) and len(level) == 2 and all(isinstance(v, str) for v in level)):
                    raise RecordingError(self.path, line_no, f"{side} level {level!r} must be [\"price\", \"size\"] strings")
                for text in level:
                    _check_number(self.path, line_no, side, text)
                parsed.append((Decimal(level[0]), Decimal(level[1])))
            prices = [p for p, _ in parsed]
            ordered = sorted(prices, reverse=(side == "bids"))
            if prices != ordered:
                raise RecordingError(
                    self.path, line_no, "bids must descend by price" if side == "bids" else "asks must ascend by price"
                )
            sides.append(tuple(parsed))
        return data["ts"], sides[0], sides[1]


class RecordingReader:
    """A recording directory: its manifest at once, its files on first use."""

    def __init__(self, path):
        self.path = Path(path)
        manifest_path = self.path / "manifest.json"
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise RecordingError(manifest_path, None, "missing: a recording directory needs manifest.json") from None
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordingError(manifest_path, getattr(exc, "lineno", None), f"not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            found = manifest.get("format") if isinstance(manifest, dict) else None
            raise RecordingError(manifest_path, None, f"format must be {FORMAT!r}, found {found!r}")
        self.manifest = manifest
        self.name = manifest.get("name") or self.path.name
        self._venues = {}
        for name, spec in (manifest.get("venues") or {}).items():
            try:
                fee = Decimal(str(spec.get("taker_fee", "0")))
                asset_class = spec["asset_class"]
            except (KeyError, ArithmeticError, AttributeError):
                raise RecordingError(manifest_path, None, f"venue {name!r} needs asset_class and a decimal taker_fee") from None
            if asset_class not in ("crypto", "forex"):
                raise RecordingError(manifest_path, None, f"venue {name!r}: asset_class must be crypto or forex")
            self._venues[name] = Venue(name=name, asset_class=asset_class, taker_fee=fee)
        self.quotes: dict[tuple[str, str], _Series] = {}
        self.bars: dict[tuple[str, str, str], _Series] = {}
        self.books: dict[tuple[str, str], _Books] = {}
        self._discover()
        self.start = manifest.get("start")
        self.end = manifest.get("end")
        if not isinstance(self.start, int) or not isinstance(self.end, int):
            self.start, self.end = self._span_from_data()

    def _venue_dirs(self, folder: str) -> Iterator[tuple[str, Path]]:
        root = self.path / folder
        if not root.is_dir():
            return
        for venue_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            if venue_dir.name not in self._venues:
                raise RecordingError(venue_dir, None, f"venue {venue_dir.name!r} is not in manifest.json's venues")
            yield venue_dir.name, venue_dir

    def _discover(self) -> None:
        for venue, folder in self._venue_dirs("quotes"):
            for file in sorted(folder.glob("*.csv")):
                self.quotes[(venue, filename_to_symbol(file.stem))] = _Series(file, QUOTE_HEADER)
        for venue, folder in self._venue_dirs("bars"):
            for file in sorted(folder.glob("*.csv")):
                stem, _, timeframe = file.stem.rpartition("@")
                if timeframe not in TIMEFRAME_MS:
                    raise RecordingError(file, None, f"unknown timeframe {timeframe!r} in the file name")
                self.bars[(venue, filename_to_symbol(stem), timeframe)] = _Series(file, BAR_HEADER)
        for venue, folder in self._venue_dirs("books"):
            for file in sorted(folder.glob("*.jsonl")):
                self.books[(venue, filename_to_symbol(file.stem))] = _Books(file)

    def _all_series(self):
        yield from self.quotes.values()
        yield from self.bars.values()
        yield from self.books.values()

    def _span_from_data(self) -> tuple[int, int]:
        stamps = [s.ts for s in self._all_series() if s.ts]
        if not stamps:
            raise RecordingError(self.path / "manifest.json", None, "no start/end and no data rows")
        return min(ts[0] for ts in stamps), max(ts[-1] for ts in stamps)

    def venues(self) -> dict[str, Venue]:
        return dict(self._venues)

    def instruments(self) -> list[Instrument]:
        keys = {(v, s) for v, s in self.quotes} | {(v, s) for v, s in self.books} | {(v, s) for v, s, _ in self.bars}
        result = []
        for venue, symbol in sorted(keys):
            result.append(
                Instrument(
                    venue=venue,
                    symbol=symbol,
                    asset_class=self._venues[venue].asset_class,
                    has_quotes=(venue, symbol) in self.quotes,
                    has_books=(venue, symbol) in self.books,
                    timeframes=tuple(
                        sorted((tf for v, s, tf in self.bars if (v, s) == (venue, symbol)), key=TIMEFRAME_MS.get)
                    ),
                )
            )
        return result

    def load_all(self) -> int:
        """Read and check every file and row now; returns the number of data rows."""
        rows = sum(series.validate() for series in [*self.quotes.values(), *self.bars.values()])
        return rows + sum(books.validate() for books in self.books.values())

    def event_times(self):
        """Sorted times of every quote, book and bar close (an int64 array)."""
        import numpy as np

        parts = [np.asarray(s.ts, dtype=np.int64) for s in [*self.quotes.values(), *self.books.values()]]
        parts += [np.asarray(s.ts, dtype=np.int64) + TIMEFRAME_MS[tf] for (_, _, tf), s in self.bars.items()]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def events(self, from_ts: int | None = None, to_ts: int | None = None) -> Iterator[tuple[int, str, str, str, str | None]]:
        """Every row as (ts, kind, venue, symbol, timeframe), merged in time order.

        A bar is an event when it completes (open ts + timeframe), which is when a
        live desk would see it.
        """
        def stream(stamps, kind, venue, symbol, timeframe, delay=0):
            return ((ts + delay, kind, venue, symbol, timeframe) for ts in stamps)

        streams = [stream(s.ts, "quote", v, sym, None) for (v, sym), s in self.quotes.items()]
        streams += [stream(b.ts, "book", v, sym, None) for (v, sym), b in self.books.items()]
        streams += [
            stream(s.ts, "bar", v, sym, tf, TIMEFRAME_MS[tf]) for (v, sym, tf), s in self.bars.items()
        ]
        for event in heapq.merge(*streams):
            if from_ts is not None and event[0] < from_ts:
                continue
            if to_ts is not None and event[0] > to_ts:
                break
            yield event


class ReplayClock:
    """The replay's notion of now, in recording time.

    `stepped` clocks move only when told (tests, backtests, the scan command).
    `realtime` clocks run at `speed` times wall time from `anchor_wall_ms`; several
    processes given the same anchor agree on the time. With `loop`, the recording
    starts over after its end, and every timestamp the feed returns is shifted by
    lap × (end − start + 1) ms so the desk's time never runs backwards.
    """

    def __init__(self, *, start: int, end: int | None = None, speed: float | None = None,
                 anchor_wall_ms: int | None = None, loop: bool = False):
        self.start = start
        self.end = end
        self.speed = speed
        self.loop = loop and end is not None and end > start
        self.anchor_wall_ms = anchor_wall_ms if anchor_wall_ms is not None else wall_ms()
        self._position = start

    @classmethod
    def stepped(cls, start: int) -> ReplayClock:
        return cls(start=start)

    @classmethod
    def realtime(cls, *, start: int, end: int, speed: float = 1.0, anchor_wall_ms: int | None = None,
                 loop: bool = False) -> ReplayClock:
        if speed <= 0:
            raise ValueError("replay speed must be positive")
        return cls(start=start, end=end, speed=speed, anchor_wall_ms=anchor_wall_ms, loop=loop)

    @property
    def is_stepped(self) -> bool:
        return self.speed is None

    def set(self, ts: int) -> None:
        if not self.is_stepped:
            raise ValueError("a realtime replay clock cannot be set")
        self._position = ts

    def advance(self, ms: int) -> None:
        self.set(self._position + ms)

    def position(self) -> tuple[int, int]:
        """(recording time, shift added to every timestamp served)."""
        if self.is_stepped:
            return self._position, 0
        elapsed = int((time.time_ns() // 1_000_000 - self.anchor_wall_ms) * self.speed)
        recording_time = self.start + max(0, elapsed)
        if self.end is None or recording_time <= self.end:
            return recording_time, 0
        if not self.loop:
            return self.end, 0
        span = self.end - self.start + 1
        lap, into = divmod(recording_time - self.start, span)
        return self.start + into, lap * span


class ReplayFeed(Feed):
    """A recording served as of its clock: never a value from after `now()`."""

    name = "replay"

    def __init__(self, reader: RecordingReader, clock: ReplayClock):
        self.reader = reader
        self.clock = clock

    def at(self, ts: int) -> ReplayFeed:
        self.clock.set(ts)
        return self

    def venues(self) -> dict[str, Venue]:
        return self.reader.venues()

    def instruments(self) -> list[Instrument]:
        return self.reader.instruments()

    def now(self) -> int:
        position, shift = self.clock.position()
        return position + shift

    def _quote_row(self, venue: str, symbol: str, when: int, shift: int) -> Quote | None:
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return None
        index = series.index_at(when)
        if index < 0:
            return None
        return self._quote_at(series, index, venue, symbol, shift)

    @staticmethod
    def _quote_at(series: _Series, index: int, venue: str, symbol: str, shift: int) -> Quote:
        bid, ask, bid_size, ask_size = (Decimal(v) if v else None for v in series.row(index))
        return Quote(venue, symbol, series.ts[index] + shift, bid, ask, bid_size, ask_size)

    def quote(self, venue: str, symbol: str) -> Quote | None:
        when, shift = self.clock.position()
        quote = self._quote_row(venue, symbol, when, shift)
        book = self._book(venue, symbol, when, shift, depth=1)
        if book is not None and (quote is None or book.ts > quote.ts):
            return book.top()
        return quote

    def _book(self, venue, symbol, when, shift, depth) -> Book | None:
        books = self.reader.books.get((venue, symbol))
        if books is None:
            return None
        index = books.index_at(when)
        if index < 0:
            return None
        ts, bids, asks = books.snapshot(index)
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        return Book(venue, symbol, ts + shift, bids, asks)

    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        when, shift = self.clock.position()
        return self._book(venue, symbol, when, shift, depth)

    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        """Completed bars only (open time + timeframe <= now), oldest first."""
        series = self.reader.bars.get((venue, symbol, timeframe))
        if series is None or limit <= 0:
            return []
        when, shift = self.clock.position()
        last = series.index_at(when - TIMEFRAME_MS[timeframe])
        result = []
        for index in range(max(0, last - limit + 1), last + 1):
            open_, high, low, close, volume = series.row(index)
            result.append(
                Bar(
                    series.ts[index] + shift, Decimal(open_), Decimal(high), Decimal(low), Decimal(close),
                    Decimal(volume) if volume else None,
                )
            )
        return result

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return []
        when, shift = self.clock.position()
        first = bisect.bisect_right(series.ts, since - shift)
        last = series.index_at(when)
        return [self._quote_at(series, index, venue, symbol, shift) for index in range(first, last + 1)]

    def close_history(self, venue: str, symbol: str, timeframe: str, since: int):
        import numpy as np

        series = self.reader.bars.get((venue, symbol, timeframe))
        if series is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        when, shift = self.clock.position()
        span = TIMEFRAME_MS[timeframe]
        opens, closes = series.close_arrays()
        low = np.searchsorted(opens, since - shift - span, side="right")
        high = np.searchsorted(opens, when - span, side="right")
        return opens[low:high] + span + shift, closes[low:high]

    def mid_history(self, venue: str, symbol: str, since: int):
        import numpy as np

        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        when, shift = self.clock.position()
        stamps, mids, usable = series.mid_arrays()
        low = np.searchsorted(stamps, since - shift, side="right")
        high = np.searchsorted(stamps, when, side="right")
        keep = usable[low:high]
        return stamps[low:high][keep] + shift, mids[low:high][keep]

    def status(self) -> list[FeedStatus]:
        when, shift = self.clock.position()
        at = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(when / 1000))
        finished = self.clock.end is not None and when >= self.clock.end and not self.clock.loop
        detail = f"replay {self.reader.name} at {at} UTC" + (" (finished)" if finished else "")
        now = wall_ms()
        return [FeedStatus(venue=name, state=OK, detail=detail, last_ok_at=now) for name in sorted(self.venues())]
