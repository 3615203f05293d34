"""The replay feed: a recording (trifecta-recording/1) served as of a replay clock.

Opening a recording reads only its manifest and lists its folders, so a recording of any
size opens at once. A CSV file is read and checked completely the first time something
asks for it (vectorised: a few milliseconds a megabyte), then kept compactly as its raw
bytes, an `array('q')` of row offsets and an `array('q')` of timestamps; a value becomes a
`Decimal` only when its row is returned, built from the text exactly as recorded. A books
file is indexed the same way (timestamp and byte offset per line) and each snapshot's
JSON is parsed only when that snapshot is asked for. A malformed file raises
`RecordingError` naming the file and the 1-based line.

Real quirks are served as recorded: locked or crossed quotes come back as they are
(`Quote.crossed` says so), a missing bar is a gap, a partial day is partial.
"""
from __future__ import annotations

import bisect
import heapq
import json
import re
from array import array
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Callable, Iterator, NamedTuple

import numpy as np

from .base import (
    OK,
    TIMEFRAME_MS,
    Bar,
    Book,
    Feed,
    FeedStatus,
    NotYetObserved,
    Instrument,
    PriceGrid,
    Quote,
    RecordingError,
    Venue,
    price_grid_of,
    wall_ms,
)
from .recording import BAR_HEADER, FORMAT, QUOTE_HEADER, filename_to_symbol

# Grammar of a CSV data row: ts is `-?[0-9]{1,18}` (fits int64), every other field is
# empty (unknown) or a plain non-negative decimal `[0-9]+(.[0-9]+)?`; bars need OHLC.
MAX_TS_DIGITS = 18
TS_TEXT = re.compile(rb"-?[0-9]{1,18}")
NUMBER_BYTES = re.compile(rb"[0-9]+(?:\.[0-9]+)?")
NUMBER_TEXT = re.compile(r"[0-9]+(?:\.[0-9]+)?")
ROW_BYTES = b"0123456789.,-\n"
BOOK_TS = re.compile(rb'[ \t]*\{[ \t]*"ts"[ \t]*:[ \t]*(-?[0-9]{1,18})[ \t]*[,}]')
_NEWLINE, _COMMA, _MINUS, _DOT, _ZERO = 10, 44, 45, 46, 48
_IS_DIGIT = np.zeros(256, dtype=bool)
_IS_DIGIT[48:58] = True
_TS_CHUNK_ROWS = 1 << 16
_SNAPSHOT_CACHE_SIZE = 8
_EXACT_FLOAT_CHARS = 15  # at most 15 digits: the mantissa is below 2**53, exact as a float
_POWERS_OF_TEN = np.array([float(10**k) for k in range(_EXACT_FLOAT_CHARS + 1)])
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def iso_ms(ts: int) -> str:
    """Epoch ms as ISO 8601 UTC with milliseconds, computed without floats (beyond year 9999: the ms)."""
    try:
        moment = EPOCH + timedelta(milliseconds=ts)
    except OverflowError:
        return f"{ts} ms"
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + f".{ts % 1000:03d}Z"


def _int64_view(values: array) -> np.ndarray:
    """A read-only numpy view of an `array('q')`, without copying it."""
    view = np.frombuffer(values, dtype=np.int64) if len(values) else np.empty(0, dtype=np.int64)
    view.flags.writeable = False
    return view


def _read_only(*arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cached arrays are shared with every caller: nobody may change them in place."""
    for values in arrays:
        values.flags.writeable = False
    return arrays


def _scan_rows(body: bytes, width: int, required: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(row start offsets + end sentinel, ts) of a CSV body if every row is well formed, else None.

    The same grammar as `_diagnose_rows`, checked with whole-file vector operations so a
    2 MB file takes milliseconds; on None the caller runs `_diagnose_rows` for the line.
    `body` is non-empty and ends with a newline. Once only digits and `.,-` newline are
    known to occur, the few non-digit bytes ("specials", in file order) say everything.
    """
    if body.translate(None, ROW_BYTES):
        return None
    data = np.frombuffer(body, dtype=np.uint8)
    specials = np.flatnonzero(data < _ZERO)
    kinds = data[specials]
    newlines = specials[kinds == _NEWLINE]
    rows = len(newlines)
    commas = specials[kinds == _COMMA]
    if len(commas) != rows * (width - 1):
        return None
    if not np.array_equal(np.searchsorted(commas, newlines), np.arange(1, rows + 1) * (width - 1)):
        return None
    commas = commas.reshape(rows, width - 1)
    starts = np.empty(rows + 1, dtype=np.int64)
    starts[0] = 0
    starts[1:] = newlines + 1
    line_starts = starts[:-1]
    minus = specials[kinds == _MINUS]
    if len(minus) and not ((minus == 0) | (data[minus - 1] == _NEWLINE)).all():
        return None  # a minus sign may only start a row (a negative ts)
    is_dot = kinds == _DOT
    if is_dot.any():
        # A dot needs a digit on each side (no special right before or after it) and one
        # field holds one dot at most (two dots in a row among the specials share a field).
        adjacent = specials[1:] - specials[:-1] == 1
        bad_after = is_dot[1:] & (adjacent | is_dot[:-1])
        bad_before = is_dot[:-1] & adjacent
        if bad_after.any() or bad_before.any() or (is_dot[0] and specials[0] == 0):
            return None
    negative = data[line_starts] == _MINUS
    ts_end = commas[:, 0]
    digits = ts_end - line_starts - negative
    if digits.min() < 1 or digits.max() > MAX_TS_DIGITS:
        return None
    if required:
        field_ends = np.column_stack([commas[:, 1:], newlines])
        if (field_ends[:, :required] - commas[:, :required] == 1).any():
            return None
    ts = _parse_ts(data, ts_end, digits)
    if ts is None:
        return None
    ts[negative] *= -1
    if rows > 1 and (ts[1:] < ts[:-1]).any():
        return None
    return starts, ts


def _parse_ts(data: np.ndarray, ts_end: np.ndarray, digits: np.ndarray) -> np.ndarray | None:
    """The unsigned ts of each row, read right-aligned from its first comma; None if a ts byte is not a digit."""
    rows, longest = len(ts_end), int(digits.max())
    uniform = int(digits.min()) == longest
    ts = np.empty(rows, dtype=np.int64)
    for first in range(0, rows, _TS_CHUNK_ROWS):
        chunk = slice(first, first + _TS_CHUNK_ROWS)
        end, width_of_ts = ts_end[chunk], digits[chunk]
        value = np.zeros(len(end), dtype=np.int64)
        for place in range(longest):
            if uniform:
                byte = data[end - longest + place]
                if not _IS_DIGIT[byte].all():
                    return None
                value *= 10
                value += byte
                value -= _ZERO
            else:
                in_field = place >= longest - width_of_ts
                byte = data[np.maximum(end - longest + place, 0)]
                if not _IS_DIGIT[byte][in_field].all():
                    return None
                value *= 10
                value += np.where(in_field, byte.astype(np.int64) - _ZERO, 0)
        ts[chunk] = value
    return ts


def _diagnose_rows(path: Path, body: bytes, header: list[str], required: int) -> None:
    """Raise the RecordingError of the first bad row, checking row by row (only run when a file is bad)."""
    width = len(header)
    previous = None
    for line_no, raw in enumerate(body.split(b"\n")[:-1], start=2):
        fields = raw.split(b",")
        if len(fields) != width:
            raise RecordingError(path, line_no, f"expected {width} columns ({','.join(header)}), found {len(fields)}")
        if not TS_TEXT.fullmatch(fields[0]):
            text = fields[0].decode("utf-8", "replace")
            raise RecordingError(path, line_no, f"ts is not integer milliseconds (at most {MAX_TS_DIGITS} digits): {text!r}")
        for position, (column, value) in enumerate(zip(header[1:], fields[1:]), start=1):
            if not value:
                if position <= required:
                    raise RecordingError(path, line_no, f"{column} is empty: a bar needs open, high, low and close")
                continue
            if not NUMBER_BYTES.fullmatch(value):
                text = value.decode("utf-8", "replace")
                if value.startswith(b"-") and NUMBER_BYTES.fullmatch(value[1:]):
                    raise RecordingError(path, line_no, f"{column} is negative: {text!r}")
                raise RecordingError(path, line_no, f"{column} is not a plain decimal number: {text!r}")
        stamp = int(fields[0])
        if previous is not None and stamp < previous:
            raise RecordingError(path, line_no, f"ts {stamp} is earlier than the row before ({previous})")
        previous = stamp
    raise RecordingError(path, None, "malformed, but no single line to blame (a reader bug: please report)")


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise RecordingError(path, None, f"cannot read: {exc.strerror or exc}") from None


class _Series:
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
        return _int64_view(self.ts)

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
        data = _read_bytes(self.path)
        if b"\r" in data:
            data = data.replace(b"\r\n", b"\n")
        header, _, body = data.partition(b"\n")
        expected = ",".join(self.header).encode()
        if header != expected:
            found = header.decode("utf-8", "replace")
            raise RecordingError(self.path, 1, f"header must be {expected.decode()}, found {found!r}")
        if body and not body.endswith(b"\n"):
            body += b"\n"
        if body:
            scanned = _scan_rows(body, self.width, self.required)
            if scanned is None:
                _diagnose_rows(self.path, body, self.header, self.required)
            starts, stamps = scanned
        else:
            starts, stamps = np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int64)
        self._body = body
        self._starts = array("q", starts.tobytes())
        self._ts = array("q", stamps.tobytes())

    def _column_floats(self, column: int) -> np.ndarray:
        """One value column as float64 (NaN where unknown), for the scanners' array math only.

        Equal to `float(text)` for every row: fields of at most 15 characters are parsed
        vectorised as an exact integer mantissa over an exact power of ten (one correctly
        rounded division); a file with longer fields goes through `float()` row by row.
        """
        rows = len(self.ts)
        if rows == 0:
            return np.empty(0)
        data = np.frombuffer(self._body, dtype=np.uint8)
        commas = np.flatnonzero(data == _COMMA).reshape(rows, self.width - 1)
        begins = commas[:, column - 1] + 1
        ends = commas[:, column] if column < self.width - 1 else _int64_view(self._starts)[1:] - 1
        lengths = ends - begins
        longest = int(lengths.max())
        if longest > _EXACT_FLOAT_CHARS:
            return np.array([float(self._body[b:e]) if e > b else np.nan for b, e in zip(begins.tolist(), ends.tolist())])
        mantissa = np.zeros(rows, dtype=np.int64)
        decimals = np.zeros(rows, dtype=np.int64)
        seen_dot = np.zeros(rows, dtype=bool)
        for place in range(longest):
            in_field = place < lengths
            byte = data[np.where(in_field, begins + place, 0)].astype(np.int64)
            is_dot = in_field & (byte == _DOT)
            is_digit = in_field & ~is_dot
            mantissa = np.where(is_digit, mantissa * 10 + (byte - _ZERO), mantissa)
            decimals += is_digit & seen_dot
            seen_dot |= is_dot
        values = mantissa / _POWERS_OF_TEN[decimals]
        values[lengths == 0] = np.nan
        return values

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


class _Books:
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
            self._index()
        return self._ts

    def ts_array(self) -> np.ndarray:
        return _int64_view(self.ts)

    def index_at(self, when: int) -> int:
        return bisect.bisect_right(self.ts, when) - 1

    def _index(self) -> None:
        data = _read_bytes(self.path)
        stamps, offsets = array("q"), array("q")
        position, line_no, previous = 0, 0, None
        while position < len(data):
            line_no += 1
            end = data.find(b"\n", position)
            end = len(data) if end < 0 else end + 1
            match = BOOK_TS.match(data, position, end)
            if match:
                stamp = int(match.group(1))
            elif not data[position:end].strip():
                raise RecordingError(self.path, line_no, "blank line: one JSON snapshot a line")
            else:
                stamp = self._parse(data[position:end], line_no)[0]
            if previous is not None and stamp < previous:
                raise RecordingError(self.path, line_no, f"ts {stamp} is earlier than the line before ({previous})")
            previous = stamp
            stamps.append(stamp)
            offsets.append(position)
            position = end
        offsets.append(len(data))
        self._offsets = offsets
        self._ts = stamps

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
            parsed = self._parse(raw, index + 1)
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

    def _parse(self, raw: bytes, line_no: int) -> tuple[int, tuple, tuple]:
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise RecordingError(self.path, line_no, f"not valid JSON: {exc}") from None
        stamp = data.get("ts") if isinstance(data, dict) else None
        if not isinstance(stamp, int) or isinstance(stamp, bool) or abs(stamp) >= 10**MAX_TS_DIGITS:
            raise RecordingError(self.path, line_no, 'a snapshot is {"ts": <int ms>, "bids": [...], "asks": [...]}')
        sides = []
        for side in ("bids", "asks"):
            levels = data.get(side)
            if not isinstance(levels, list):
                raise RecordingError(self.path, line_no, f"{side} must be a list of [price, size]")
            parsed = []
            for level in levels:
                if not (isinstance(level, list) and len(level) == 2 and all(isinstance(v, str) for v in level)):
                    raise RecordingError(self.path, line_no, f'{side} level {level!r} must be ["price", "size"] strings')
                for text in level:
                    if not NUMBER_TEXT.fullmatch(text):
                        negative = text.startswith("-") and NUMBER_TEXT.fullmatch(text[1:])
                        what = "negative" if negative else "not a plain decimal number"
                        raise RecordingError(self.path, line_no, f"{side} level {level!r}: {text!r} is {what}")
                parsed.append((Decimal(level[0]), Decimal(level[1])))
            for index in range(1, len(parsed)):
                above, below = parsed[index - 1][0], parsed[index][0]
                if (side == "bids" and below > above) or (side == "asks" and below < above):
                    order = "bids must descend by price" if side == "bids" else "asks must ascend by price"
                    raise RecordingError(self.path, line_no, f"{order}: level {index + 1} ({below}) after {above}")
            sides.append(tuple(parsed))
        return stamp, sides[0], sides[1]


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
        self.quotes: dict[tuple[str, str], _Series] = {}
        self.bars: dict[tuple[str, str, str], _Series] = {}
        self.books: dict[tuple[str, str], _Books] = {}
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
                self.quotes[(venue, self._symbol(file, file.stem))] = _Series(file, QUOTE_HEADER)
        for venue, folder in self._venue_dirs("bars"):
            for file in sorted(folder.glob("*.csv")):
                stem, _, timeframe = file.stem.rpartition("@")
                if timeframe not in TIMEFRAME_MS or not stem:
                    raise RecordingError(
                        file, None, f"bars file names are BASE-QUOTE@TIMEFRAME with a timeframe of {', '.join(TIMEFRAME_MS)}",
                    )
                self.bars[(venue, self._symbol(file, stem), timeframe)] = _Series(file, BAR_HEADER)
        for venue, folder in self._venue_dirs("books"):
            for file in sorted(folder.glob("*.jsonl")):
                self.books[(venue, self._symbol(file, file.stem))] = _Books(file)

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


class ReplayClock:
    """The replay's notion of now, in recording time.

    `stepped` clocks move only when told (`set`, `advance`: tests, backtests, the scan
    command). `realtime` clocks run at `speed` times wall time from `anchor_wall_ms`
    (simulated = start + (wall − anchor) × speed); processes given the same anchor agree
    on the time. Without `loop` a realtime clock stops at `end`. With `loop` it starts
    over at `start` after `end`, and the feed adds lap × (end − start + 1) ms to every
    timestamp it returns (its `now()` included), so the desk's time never runs backwards
    and the same recorded row comes back on each lap later by exactly that shift.
    """

    def __init__(self, start: int, end: int | None = None, speed: float | None = None,
                 anchor_wall_ms: int | None = None, loop: bool = False, wall_clock: Callable[[], int] = wall_ms):
        self.start = start
        self.end = end
        self.speed = speed
        self.loop = loop and end is not None
        self.wall_clock = wall_clock
        self.anchor_wall_ms = anchor_wall_ms if anchor_wall_ms is not None else wall_clock()
        self._position = start

    @classmethod
    def stepped(cls, start: int) -> ReplayClock:
        return cls(start)

    @classmethod
    def realtime(cls, start: int, end: int, speed: float = 1.0, anchor_wall_ms: int | None = None,
                 loop: bool = False, wall_clock: Callable[[], int] = wall_ms) -> ReplayClock:
        if not speed > 0:
            raise ValueError(f"replay speed must be positive, not {speed!r}")
        if end < start:
            raise ValueError(f"replay end {end} is before start {start}")
        return cls(start, end, speed, anchor_wall_ms, loop, wall_clock)

    @property
    def is_stepped(self) -> bool:
        return self.speed is None

    def set(self, ts: int) -> None:
        if not self.is_stepped:
            raise ValueError("a realtime replay clock follows the wall clock: it cannot be set")
        self._position = ts

    def advance(self, ms: int) -> None:
        self.set(self._position + ms)

    def position(self) -> tuple[int, int]:
        """(recording time, shift added to every timestamp served); the desk's now is their sum."""
        if self.is_stepped:
            return self._position, 0
        elapsed = max(0, int((self.wall_clock() - self.anchor_wall_ms) * self.speed))
        recording_time = self.start + elapsed
        if recording_time <= self.end:
            return recording_time, 0
        if not self.loop:
            return self.end, 0
        span = self.end - self.start + 1
        lap, into = divmod(elapsed, span)
        return self.start + into, lap * span

    def now(self) -> int:
        position, shift = self.position()
        return position + shift


class ReplayFeed(Feed):
    """A recording served as of its clock: never a value from after `now()`, never another instrument's."""

    name = "replay"

    def __init__(self, reader: RecordingReader, clock: ReplayClock):
        self.reader = reader
        self.clock = clock

    def at(self, ts: int) -> ReplayFeed:
        """Move a stepped clock to `ts`; returns the feed so `feed.at(t).quote(...)` reads naturally."""
        self.clock.set(ts)
        return self

    def venues(self) -> dict[str, Venue]:
        return self.reader.venues()

    def instruments(self) -> list[Instrument]:
        return self.reader.instruments()

    def now(self) -> int:
        return self.clock.now()

    @staticmethod
    def _quote_at(series: _Series, index: int, venue: str, symbol: str, shift: int) -> Quote:
        bid, ask, bid_size, ask_size = series.decimals(index)
        return Quote(venue, symbol, series.ts[index] + shift, bid, ask, bid_size, ask_size)

    def _quote_row(self, venue: str, symbol: str, when: int, shift: int) -> Quote | None:
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return None
        index = series.index_at(when)
        return None if index < 0 else self._quote_at(series, index, venue, symbol, shift)

    def _book(self, venue: str, symbol: str, when: int, shift: int, depth: int | None) -> Book | None:
        books = self.reader.books.get((venue, symbol))
        if books is None:
            return None
        index = books.index_at(when)
        if index < 0:
            return None
        ts, bids, asks = books.snapshot(index)
        if depth is not None:
            bids, asks = bids[:max(depth, 0)], asks[:max(depth, 0)]
        return Book(venue, symbol, ts + shift, bids, asks)

    def quote(self, venue: str, symbol: str) -> Quote | None:
        """The latest quote row at or before now, or the top of the latest book snapshot if that is newer."""
        when, shift = self.clock.position()
        quote = self._quote_row(venue, symbol, when, shift)
        book = self._book(venue, symbol, when, shift, depth=1)
        if book is not None and (quote is None or book.ts > quote.ts):
            return book.top()
        return quote

    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        """The latest snapshot at or before now, cut to `depth` levels a side."""
        when, shift = self.clock.position()
        return self._book(venue, symbol, when, shift, depth)

    def _after(self, ts: int) -> tuple[int, int]:
        """Recording time and shift for a look at `ts`: a realtime clock must have reached it first."""
        when, shift = self.clock.position()
        if not self.clock.is_stepped and when + shift < ts:
            raise NotYetObserved(ts, when + shift)
        return ts - shift, shift

    def book_after(self, venue: str, symbol: str, ts: int) -> Book | None:
        """The first snapshot at or after `ts` (the last one when the recording ends first)."""
        target, shift = self._after(ts)
        books = self.reader.books.get((venue, symbol))
        if books is None:
            return None
        index = min(bisect.bisect_left(books.ts, target), len(books) - 1)
        stamp, bids, asks = books.snapshot(index)
        return Book(venue, symbol, stamp + shift, bids, asks)

    def quote_after(self, venue: str, symbol: str, ts: int) -> Quote | None:
        """The first quote row (or book top) at or after `ts`, the last one when the recording ends first."""
        target, shift = self._after(ts)
        candidates = []
        series = self.reader.quotes.get((venue, symbol))
        if series is not None and len(series):
            candidates.append(self._quote_at(series, min(bisect.bisect_left(series.ts, target), len(series) - 1),
                                             venue, symbol, shift))
        book = self.book_after(venue, symbol, ts)
        if book is not None:
            candidates.append(book.top())
        if not candidates:
            return None
        later = [q for q in candidates if q.ts >= ts]
        return min(later, key=lambda q: q.ts) if later else max(candidates, key=lambda q: q.ts)

    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        """Up to `limit` completed bars (open ts + timeframe <= now), oldest first.

        A bar still forming at now is left out: its recorded high/low/close lie in the
        future, so serving it would leak future data.
        """
        series = self.reader.bars.get((venue, symbol, timeframe))
        if series is None or limit <= 0:
            return []
        when, shift = self.clock.position()
        last = series.index_at(when - TIMEFRAME_MS[timeframe])
        result = []
        for index in range(max(0, last - limit + 1), last + 1):
            open_, high, low, close, volume = series.decimals(index)
            result.append(Bar(series.ts[index] + shift, open_, high, low, close, volume))
        return result

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        """Quote rows in (since, now], oldest first (quotes files only; a looping replay only the current lap)."""
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return []
        when, shift = self.clock.position()
        first = bisect.bisect_right(series.ts, since - shift)
        last = series.index_at(when)
        return [self._quote_at(series, index, venue, symbol, shift) for index in range(first, last + 1)]

    def mid_history(self, venue: str, symbol: str, since: int):
        series = self.reader.quotes.get((venue, symbol))
        if series is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        when, shift = self.clock.position()
        stamps, mids, usable = series.mid_arrays()
        low = np.searchsorted(stamps, since - shift, side="right")
        high = np.searchsorted(stamps, when, side="right")
        keep = usable[low:high]
        return stamps[low:high][keep] + shift, mids[low:high][keep]

    def close_history(self, venue: str, symbol: str, timeframe: str, since: int):
        series = self.reader.bars.get((venue, symbol, timeframe))
        if series is None:
            return np.empty(0, dtype=np.int64), np.empty(0)
        when, shift = self.clock.position()
        span = TIMEFRAME_MS[timeframe]
        opens, closes = series.close_arrays()
        low = np.searchsorted(opens, since - shift - span, side="right")
        high = np.searchsorted(opens, when - span, side="right")
        return opens[low:high] + span + shift, closes[low:high]

    def price_grid(self, venue: str, symbol: str, *, timeframe: str | None, since: int, now: int) -> PriceGrid | None:
        """A window of the whole recording's grid, built once per instrument (`stable`: scanners may keep
        what they derive from it); the same values as `Feed.price_grid` computes from the window alone."""
        step = TIMEFRAME_MS[timeframe] if timeframe else 1000
        full = self.reader.price_grid(venue, symbol, timeframe, step)
        _, shift = self.clock.position()
        if full is None or now - shift > full.first_ts + (len(full.values) - 1) * step:
            return super().price_grid(venue, symbol, timeframe=timeframe, since=since, now=now)
        stamps = full.stamps
        start = int(np.searchsorted(stamps, since - shift, side="right"))
        end = int(np.searchsorted(stamps, now - shift, side="right")) - 1
        if end < start:
            return None
        first = -(-int(stamps[start]) // step) * step
        lo, hi = (first - full.first_ts) // step, (now - shift - full.first_ts) // step
        if hi < lo:
            return None
        return PriceGrid(full.values, full.first_ts + shift, step, lo, hi, int(stamps[end]) + shift, stable=True)

    def status(self) -> list[FeedStatus]:
        """One OK status per venue; the detail says where in the recording the replay is."""
        when, shift = self.clock.position()
        clock = self.clock
        detail = f"replay {self.reader.name} at {iso_ms(when)}"
        if shift:
            detail += f" (lap {shift // (clock.end - clock.start + 1) + 1})"
        elif not clock.is_stepped and not clock.loop and when >= clock.end:
            detail += " (finished)"
        now = wall_ms()
        return [FeedStatus(venue=name, state=OK, detail=detail, last_ok_at=now) for name in sorted(self.reader.venues())]
