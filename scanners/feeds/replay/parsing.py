"""The byte and line grammar of a recording's data files (RECORDING.md), bytes in, values out.

Checked with whole-file vector operations so that a large file is checked at once; a bad
file is then walked row by row to raise the `RecordingError` of its first bad 1-based line.
Nothing here opens a file: `path` only names it in errors.
"""
from __future__ import annotations

import json
import re
from array import array
from decimal import Decimal
from pathlib import Path

import numpy as np

from ..base import RecordingError

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
_EXACT_FLOAT_CHARS = 15  # at most 15 digits: the mantissa is below 2**53, exact as a float
_POWERS_OF_TEN = np.array([float(10**k) for k in range(_EXACT_FLOAT_CHARS + 1)])


def int64_view(values: array) -> np.ndarray:
    """A read-only numpy view of an `array('q')`, without copying it."""
    view = np.frombuffer(values, dtype=np.int64) if len(values) else np.empty(0, dtype=np.int64)
    view.flags.writeable = False
    return view


def parse_csv(path: Path, data: bytes, header: list[str], required: int) -> tuple[bytes, array, array]:
    """(body, row start offsets + end sentinel, ts) of a whole quotes or bars file, every row checked.

    `required` is how many value columns may not be empty (4 for a bar's OHLC). The body
    is kept by the caller: values are read from its bytes when a row is asked for.
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n")
    found_header, _, body = data.partition(b"\n")
    expected = ",".join(header).encode()
    if found_header != expected:
        found = found_header.decode("utf-8", "replace")
        raise RecordingError(path, 1, f"header must be {expected.decode()}, found {found!r}")
    if body and not body.endswith(b"\n"):
        body += b"\n"
    if body:
        scanned = scan_rows(body, len(header), required)
        if scanned is None:
            diagnose_rows(path, body, header, required)
        starts, stamps = scanned
    else:
        starts, stamps = np.zeros(1, dtype=np.int64), np.empty(0, dtype=np.int64)
    return body, array("q", starts.tobytes()), array("q", stamps.tobytes())


def scan_rows(body: bytes, width: int, required: int) -> tuple[np.ndarray, np.ndarray] | None:
    """(row start offsets + end sentinel, ts) of a CSV body if every row is well formed, else None.

    The same grammar as `diagnose_rows`, checked with whole-file vector operations; on
    None the caller runs `diagnose_rows` for the line. `body` is non-empty and ends with a
    newline. Once only digits and `.,-` newline are known to occur, the few non-digit
    bytes ("specials", in file order) say everything.
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


def diagnose_rows(path: Path, body: bytes, header: list[str], required: int) -> None:
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


def column_floats(body: bytes, starts: array, rows: int, width: int, column: int) -> np.ndarray:
    """One value column of a checked CSV body as float64 (NaN where unknown), for the scanners' array math only.

    Equal to `float(text)` for every row: fields of at most 15 characters are parsed
    vectorised as an exact integer mantissa over an exact power of ten (one correctly
    rounded division); a file with longer fields goes through `float()` row by row.
    """
    if rows == 0:
        return np.empty(0)
    data = np.frombuffer(body, dtype=np.uint8)
    commas = np.flatnonzero(data == _COMMA).reshape(rows, width - 1)
    begins = commas[:, column - 1] + 1
    ends = commas[:, column] if column < width - 1 else int64_view(starts)[1:] - 1
    lengths = ends - begins
    longest = int(lengths.max())
    if longest > _EXACT_FLOAT_CHARS:
        return np.array([float(body[b:e]) if e > b else np.nan for b, e in zip(begins.tolist(), ends.tolist())])
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


def index_books(path: Path, data: bytes) -> tuple[array, array]:
    """(ts, byte offset) of every line of a books file, plus the end offset; a line's JSON is parsed
    only when its `ts` key does not come first."""
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
            raise RecordingError(path, line_no, "blank line: one JSON snapshot a line")
        else:
            stamp = parse_snapshot(path, data[position:end], line_no)[0]
        if previous is not None and stamp < previous:
            raise RecordingError(path, line_no, f"ts {stamp} is earlier than the line before ({previous})")
        previous = stamp
        stamps.append(stamp)
        offsets.append(position)
        position = end
    offsets.append(len(data))
    return stamps, offsets


def parse_snapshot(path: Path, raw: bytes, line_no: int) -> tuple[int, tuple, tuple]:
    """(ts, bids, asks) of one books line, every level checked and made `Decimal`."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise RecordingError(path, line_no, f"not valid JSON: {exc}") from None
    stamp = data.get("ts") if isinstance(data, dict) else None
    if not isinstance(stamp, int) or isinstance(stamp, bool) or abs(stamp) >= 10**MAX_TS_DIGITS:
        raise RecordingError(path, line_no, 'a snapshot is {"ts": <int ms>, "bids": [...], "asks": [...]}')
    sides = []
    for side in ("bids", "asks"):
        levels = data.get(side)
        if not isinstance(levels, list):
            raise RecordingError(path, line_no, f"{side} must be a list of [price, size]")
        parsed = []
        for level in levels:
            if not (isinstance(level, list) and len(level) == 2 and all(isinstance(v, str) for v in level)):
                raise RecordingError(path, line_no, f'{side} level {level!r} must be ["price", "size"] strings')
            for text in level:
                if not NUMBER_TEXT.fullmatch(text):
                    negative = text.startswith("-") and NUMBER_TEXT.fullmatch(text[1:])
                    what = "negative" if negative else "not a plain decimal number"
                    raise RecordingError(path, line_no, f"{side} level {level!r}: {text!r} is {what}")
            parsed.append((Decimal(level[0]), Decimal(level[1])))
        for index in range(1, len(parsed)):
            above, below = parsed[index - 1][0], parsed[index][0]
            if (side == "bids" and below > above) or (side == "asks" and below < above):
                order = "bids must descend by price" if side == "bids" else "asks must ascend by price"
                raise RecordingError(path, line_no, f"{order}: level {index + 1} ({below}) after {above}")
        sides.append(tuple(parsed))
    return stamp, sides[0], sides[1]
