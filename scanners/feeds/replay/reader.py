"""A recording directory read lazily, so that a recording of any size opens at once.

Opening reads only the manifest and lists the folders. A CSV file is read and checked
completely the first time something asks for it, then kept compactly as its raw bytes,
an `array('q')` of row offsets and an `array('q')` of timestamps; a value becomes a
`Decimal` only when its row is returned, built from the text exactly as recorded. A books
file is indexed the same way (timestamp and byte offset per line) and each snapshot's
JSON is parsed only when that snapshot is asked for.
"""
from __future__ import annotations

import bisect
import heapq
import json
from array import array
from decimal import Decimal
from pathlib import Path
from typing import Iterator, NamedTuple

import numpy as np

from ..base import TIMEFRAME_MS, Instrument, RecordingError, Venue, price_grid_of
from ..recording import BAR_HEADER, FORMAT, QUOTE_HEADER, filename_to_symbol
from .parsing import column_floats, index_books, int64_view, parse_csv, parse_snapshot

_SNAPSHOT_CACHE_SIZE = 8


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cached arrays are shared with every caller: nobody may change them in place."""
    for values in arrays:
        values.flags.writeable = False
    return arrays


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RecordingError(path, None, f"cannot read: {exc.strerror or exc}") from None


class Series:
    """One quotes or bars CSV: checked and indexed on first use, values kept as raw bytes."""

    def __init__(self, path: Path, header: list[str]):
        self.path = path
        self.header = header
        self.width = len(header)
        self.required = 4 if header is BAR_HEADER else 0
        self._body = b""
        self._starts = array("q")
        self._ts: array | None = None
        self._mids = None
        self._closes = None

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def ts(self) -> array:
        """Timestamps of every row, ascending (an `array('q')`)."""
        if self._ts is None:
            self._load()
        return self._ts

    def ts_array(self) -> np.ndarray:
        return int64_view(self.ts)

    def index_at(self, when: int) -> int:
        """Index of the latest row with ts <= when (the last of equal ts), or -1."""
        return bisect.bisect_right(self.ts, when) - 1

    def row(self, index: int) -> tuple[str, ...]:
        """The raw value texts of one row (without ts), as recorded; '' is unknown."""
        stamps = self.ts
        if index < 0:
            index += len(stamps)
        text = self._body[self._starts[index]:self._starts[index + 1] - 1].decode("ascii")
        return tuple(text.split(",")[1:])

    def decimals(self, index: int) -> tuple[Decimal | None, ...]:
        return tuple(Decimal(value) if value else None for value in self.row(index))

    def validate(self) -> int:
        """Every row is checked when the file is first read; returns the number of rows."""
        return len(self.ts)

    def _load(self) -> None:
        self._body, self._starts, self._ts = parse_csv(self.path, _read_bytes(self.path), self.header, self.required)

    def _column_floats(self, column: int) -> np.ndarray:
        rows = len(self.ts)  # reads the file on first use
        return column_floats(self._body, self._starts, rows, self.width, column)

    def mid_arrays(self):
        """(ts, mid, usable) as numpy arrays, built once: usable rows have both sides and are not crossed."""
        if self._mids is None:
            bids, asks = self._column_floats(1), self._column_floats(2)
            with np.errstate(invalid="ignore"):
                usable = bids < asks
            self._mids = _read_only(self.ts_array(), (bids + asks) / 2, usable)
        return self._mids

    def close_arrays(self):
        """(open ts, close) of a bars file as numpy arrays, built once."""
        if self._closes is None:
            self._closes = _read_only(self.ts_array(), self._column_floats(4))
        return self._closes


class Books:
    """One books JSONL: ts and byte offset of each snapshot at first use; a snapshot's JSON when asked for."""

    def __init__(self, path: Path):
        self.path = path
        self._offsets = array("q")
        self._ts: array | None = None
        self._parsed: dict[int, tuple[int, tuple, tuple]] = {}

    def __len__(self) -> int:
        return len(self.ts)

    @property
    def ts(self) -> array:
        if self._ts is None:
            self._ts, self._offsets = index_books(self.path, _read_bytes(self.path))
        return self._ts

    def ts_array(self) -> np.ndarray:
        return int64_view(self.ts)

    def index_at(self, when: int) -> int:
        return bisect.bisect_right(self.ts, when) - 1

    def snapshot(self, index: int) -> tuple[int, tuple, tuple]:
        """(ts, bids, asks) of one line, parsed and checked now; the last few are kept."""
        stamps = self.ts
        if index < 0:
            index += len(stamps)
        parsed = self._parsed.get(index)
        if parsed is None:
            start, end = self._offsets[index], self._offsets[index + 1]
            try:
                with self.path.open("rb") as handle:
                    handle.seek(start)
                    raw = handle.read(end - start)
            except OSError as exc:
                raise RecordingError(self.path, index + 1, f"cannot read: {exc.strerror or exc}") from None
            parsed = parse_snapshot(self.path, raw, index + 1)
            if parsed[0] != stamps[index]:
                raise RecordingError(
                    self.path, index + 1,
                    f"ts {parsed[0]} differs from the ts {stamps[index]} indexed (the file changed, or the line repeats its ts key)",
                )
            if len(self._parsed) >= _SNAPSHOT_CACHE_SIZE:
                self._parsed.clear()
            self._parsed[index] = parsed
        return parsed

    def validate(self) -> int:
        """Parse and check every snapshot now; returns the number of snapshots."""
        for index in range(len(self.ts)):
            self.snapshot(index)
        return len(self.ts)


class Event(NamedTuple):
    """One row of a recording in the merged stream; a bar's ts is its close (open + timeframe)."""

    ts: int
    kind: str  # "quote", "book" or "bar"
    venue: str
    symbol: str
    timeframe: str | None


def _event_stream(stamps: array, kind: str, venue: str, symbol: str, timeframe: str | None, delay: int,
                  from_ts: int | None, to_ts: int | None) -> Iterator[Event]:
    first = 0 if from_ts is None else bisect.bisect_left(stamps, from_ts - delay)
    for index in range(first, len(stamps)):
        ts = stamps[index] + delay
        if to_ts is not None and ts > to_ts:
            return
        yield Event(ts, kind, venue, symbol, timeframe)


MAX_GRID_POINTS = 4_000_000  # 32 MB of floats: 46 days of seconds


class _FullGrid(NamedTuple):
    values: np.ndarray
    first_ts: int
    stamps: np.ndarray  # the observations' times


class RecordingReader:
    """A recording directory: its manifest at once, each data file on first use."""

    def __init__(self, path):
        self.path = Path(path)
        self._instruments: list[Instrument] | None = None
        self._grids: dict = {}
        manifest_path = self.path / "manifest.json"
        self.manifest = self._read_manifest(manifest_path)
        self.name: str = str(self.manifest.get("name") or self.path.name)
        self.description: str = str(self.manifest.get("description") or "")
        self._venues = self._read_venues(manifest_path, self.manifest.get("venues"))
        self.quotes: dict[tuple[str, str], Series] = {}
        self.bars: dict[tuple[str, str, str], Series] = {}
        self.books: dict[tuple[str, str], Books] = {}
        self._discover()
        start, end = self.manifest.get("start"), self.manifest.get("end")
        if self._is_ms(start) and self._is_ms(end):
            self.start, self.end = start, end
        else:
            self.start, self.end = self._span_from_data()
        if self.end < self.start:
            raise RecordingError(manifest_path, None, f"end {self.end} is before start {self.start}")

    @staticmethod
    def _is_ms(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    @staticmethod
    def _read_manifest(manifest_path: Path) -> dict:
        try:
            text = manifest_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise RecordingError(manifest_path, None, "missing: a recording directory needs manifest.json") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise RecordingError(manifest_path, None, f"cannot read: {exc}") from None
        try:
            manifest = json.loads(text, parse_float=Decimal)
        except ValueError as exc:
            raise RecordingError(manifest_path, getattr(exc, "lineno", None), f"not valid JSON: {exc}") from None
        if not isinstance(manifest, dict):
            raise RecordingError(manifest_path, None, "must be a JSON object")
        if manifest.get("format") != FORMAT:
            raise RecordingError(manifest_path, None, f"format must be {FORMAT!r}, found {manifest.get('format')!r}")
        return manifest

    @staticmethod
    def _read_venues(manifest_path: Path, spec) -> dict[str, Venue]:
        if not isinstance(spec, dict):
            raise RecordingError(
                manifest_path, None, 'venues must be an object: {"<venue>": {"asset_class": ..., "taker_fee": ...}}',
            )
        venues = {}
        for name, fields in spec.items():
            if not isinstance(fields, dict):
                raise RecordingError(manifest_path, None, f"venue {name!r} must be an object with asset_class and taker_fee")
            asset_class = fields.get("asset_class")
            if asset_class not in ("crypto", "forex"):
                raise RecordingError(
                    manifest_path, None, f"venue {name!r}: asset_class must be crypto or forex, found {asset_class!r}",
                )
            fee_text = fields.get("taker_fee")
            if isinstance(fee_text, bool) or not isinstance(fee_text, (str, int, Decimal)):
                raise RecordingError(
                    manifest_path, None, f"venue {name!r}: taker_fee must be a decimal string, found {fee_text!r}",
                )
            try:
                fee = Decimal(str(fee_text))
            except ArithmeticError:
                fee = None
            if fee is None or not fee.is_finite() or fee < 0:
                raise RecordingError(
                    manifest_path, None, f"venue {name!r}: taker_fee must be a non-negative decimal, found {fee_text!r}",
                )
            venues[name] = Venue(name=name, asset_class=asset_class, taker_fee=fee)
        return venues

    def _venue_dirs(self, folder: str) -> Iterator[tuple[str, Path]]:
        root = self.path / folder
        if not root.is_dir():
            return
        for venue_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            if venue_dir.name not in self._venues:
                raise RecordingError(
                    venue_dir, None,
                    f"venue {venue_dir.name!r} has data but is not in manifest.json's venues ({', '.join(sorted(self._venues))})",
                )
            yield venue_dir.name, venue_dir

    @staticmethod
    def _symbol(file: Path, stem: str) -> str:
        base, _, quote = stem.partition("-")
        if not base or not quote or quote.startswith("_"):
            raise RecordingError(file, None, f"file name {file.name!r} is not BASE-QUOTE (BTC-USDT, BTC-USDT_USDT)")
        return filename_to_symbol(stem)

    def _discover(self) -> None:
        for venue, folder in self._venue_dirs("quotes"):
            for file in sorted(folder.glob("*.csv")):
                self.quotes[(venue, self._symbol(file, file.stem))] = Series(file, QUOTE_HEADER)
        for venue, folder in self._venue_dirs("bars"):
            for file in sorted(folder.glob("*.csv")):
                stem, _, timeframe = file.stem.rpartition("@")
                if timeframe not in TIMEFRAME_MS or not stem:
                    raise RecordingError(
                        file, None, f"bars file names are BASE-QUOTE@TIMEFRAME with a timeframe of {', '.join(TIMEFRAME_MS)}",
                    )
                self.bars[(venue, self._symbol(file, stem), timeframe)] = Series(file, BAR_HEADER)
        for venue, folder in self._venue_dirs("books"):
            for file in sorted(folder.glob("*.jsonl")):
                self.books[(venue, self._symbol(file, file.stem))] = Books(file)

    def _all_files(self):
        yield from self.quotes.values()
        yield from self.bars.values()
        yield from self.books.values()

    def _span_from_data(self) -> tuple[int, int]:
        stamps = [f.ts for f in self._all_files() if len(f.ts)]
        if not stamps:
            raise RecordingError(self.path / "manifest.json", None, "no start/end and no data rows to take them from")
        return min(ts[0] for ts in stamps), max(ts[-1] for ts in stamps)

    def venues(self) -> dict[str, Venue]:
        return dict(self._venues)

    def instruments(self) -> list[Instrument]:
        """Every (venue, symbol) with a file, from the file names alone (listed once: the files do not change)."""
        if self._instruments is None:
            self._instruments = self._list_instruments()
        return list(self._instruments)

    def _list_instruments(self) -> list[Instrument]:
        timeframes: dict[tuple[str, str], list[str]] = {}
        for venue, symbol, timeframe in self.bars:
            timeframes.setdefault((venue, symbol), []).append(timeframe)
        keys = set(self.quotes) | set(self.books) | set(timeframes)
        return [
            Instrument(
                venue=venue,
                symbol=symbol,
                asset_class=self._venues[venue].asset_class,
                has_quotes=(venue, symbol) in self.quotes,
                has_books=(venue, symbol) in self.books,
                timeframes=tuple(sorted(timeframes.get((venue, symbol), ()), key=TIMEFRAME_MS.__getitem__)),
            )
            for venue, symbol in sorted(keys)
        ]

    def load_all(self) -> int:
        """Read and check every file, row and snapshot now; returns the number of data rows."""
        return sum(file.validate() for file in self._all_files())

    def price_grid(self, venue: str, symbol: str, timeframe: str | None, step: int) -> _FullGrid | None:
        """The whole recording's grid of bar closes (quote mids when `timeframe` is None), built on first use
        (None when there is no data, or the grid would exceed MAX_GRID_POINTS: callers use windows then)."""
        key = (venue, symbol, timeframe, step)
        if key not in self._grids:
            if timeframe:
                series = self.bars.get((venue, symbol, timeframe))
                stamps, values = (None, None) if series is None else series.close_arrays()
                stamps = None if stamps is None else stamps + TIMEFRAME_MS[timeframe]
            else:
                series = self.quotes.get((venue, symbol))
                if series is None:
                    stamps = values = None
                else:
                    ts, mids, usable = series.mid_arrays()
                    stamps, values = ts[usable], mids[usable]
            grid = None
            if stamps is not None and len(stamps) and (max(self.end, int(stamps[-1])) - int(stamps[0])) // step <= MAX_GRID_POINTS:
                whole = price_grid_of(stamps, values, now=max(self.end, int(stamps[-1])), step=step)
                grid = _FullGrid(whole.values, whole.first_ts, stamps)
            self._grids[key] = grid
        return self._grids[key]

    def event_times(self, keep=None) -> np.ndarray:
        """Sorted times of every quote, book and bar close (an int64 array); `keep(venue, symbol)`
        narrows them to some instruments."""
        def kept(venue, symbol):
            return keep is None or keep(venue, symbol)

        parts = [f.ts_array() for (v, sym), f in [*self.quotes.items(), *self.books.items()] if kept(v, sym)]
        parts += [s.ts_array() + TIMEFRAME_MS[tf] for (v, sym, tf), s in self.bars.items() if kept(v, sym)]
        return np.sort(np.concatenate(parts)) if parts else np.empty(0, dtype=np.int64)

    def events(self, from_ts: int | None = None, to_ts: int | None = None) -> Iterator[Event]:
        """Every row as an `Event` (ts, kind, venue, symbol, timeframe), merged in time order, within [from_ts, to_ts].

        A bar is an event when it completes (open ts + timeframe): that is when the
        replay feed (and a live desk) first serves it. Equal times keep a stable order
        (kind, venue, symbol, timeframe).
        """
        streams = [_event_stream(s.ts, "quote", v, sym, None, 0, from_ts, to_ts) for (v, sym), s in self.quotes.items()]
        streams += [_event_stream(b.ts, "book", v, sym, None, 0, from_ts, to_ts) for (v, sym), b in self.books.items()]
        streams += [
            _event_stream(s.ts, "bar", v, sym, tf, TIMEFRAME_MS[tf], from_ts, to_ts) for (v, sym, tf), s in self.bars.items()
        ]
        return heapq.merge(*streams)
