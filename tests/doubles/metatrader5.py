"""A stand-in for the MetaTrader5 package that serves a recording at a settable clock.

The real package only runs on Windows beside a logged-in terminal. This double has the
part of its API that `MetaTraderFeed` uses, with the package's constants, return shapes
(namedtuples of floats, numpy structured arrays with MT5's dtype, times in seconds and
`time_msc` in ms) and `(code, message)` errors, so the feed meets what MT5 really hands
back. It reads the recording with the csv module so it depends on no feed code.

It is stricter than the terminal in one way: ticks of a symbol that was never
`symbol_select`-ed are refused, so a test notices a feed that forgets to select.
"""
from __future__ import annotations

import bisect
import csv
import json
from collections import namedtuple
from pathlib import Path

import numpy as np

TIMEFRAME_M1 = 1
TIMEFRAME_M5 = 5
TIMEFRAME_M15 = 15
TIMEFRAME_H1 = 16385
TIMEFRAME_H4 = 16388
TIMEFRAME_D1 = 16408
TIMEFRAME_BY_RECORDING = {
    "1m": TIMEFRAME_M1,
    "5m": TIMEFRAME_M5,
    "15m": TIMEFRAME_M15,
    "1h": TIMEFRAME_H1,
    "4h": TIMEFRAME_H4,
    "1d": TIMEFRAME_D1,
}

BOOK_TYPE_SELL = 1
BOOK_TYPE_BUY = 2
BOOK_TYPE_SELL_MARKET = 3
BOOK_TYPE_BUY_MARKET = 4

TICK_FLAG_BID = 2
TICK_FLAG_ASK = 4

SUCCESS = (1, "Success")
CALL_FAILED = (-1, "Terminal: Call failed")
NOT_FOUND = (-4, "Terminal: Not found")
AUTH_FAILED = (-6, "Terminal: Authorization failed")
NO_IPC = (-10004, "No IPC connection")
IPC_TIMEOUT = (-10005, "IPC timeout")

Tick = namedtuple("Tick", "time bid ask last volume time_msc flags volume_real")
SymbolInfo = namedtuple(
    "SymbolInfo", "name description currency_base currency_profit currency_margin digits point visible select"
)
BookInfo = namedtuple("BookInfo", "type price volume volume_dbl")
RATES_DTYPE = np.dtype(
    [
        ("time", "<i8"),
        ("open", "<f8"),
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("tick_volume", "<u8"),
        ("spread", "<i4"),
        ("real_volume", "<u8"),
    ]
)
CONSTANTS = {
    name: value
    for name, value in dict(globals()).items()
    if name.startswith(("TIMEFRAME_", "BOOK_TYPE_", "TICK_FLAG_")) and isinstance(value, int)
}


def _decimals(text: str) -> int:
    return len(text.partition(".")[2]) if text else 0


class _Series:
    """Rows of one CSV sorted by ts, answering "latest at or before t" by bisection."""

    def __init__(self, path: Path):
        with path.open(newline="", encoding="utf-8") as handle:
            self.rows = list(csv.DictReader(handle))
        self.times = [int(row["ts"]) for row in self.rows]

    def upto(self, clock_ms: int) -> int:
        """How many rows have ts <= clock_ms."""
        return bisect.bisect_right(self.times, clock_ms)


class _Symbol:
    def __init__(self, base: str, quote: str):
        self.base, self.quote = base, quote
        self.quotes: _Series | None = None
        self.bars: dict[int, _Series] = {}
        self.digits = 0
        self.selected = False


class MetaTrader5Double:
    """One terminal logged in at a broker whose prices are one venue of a recording.

    `clock_ms` is the terminal's "now" (default: the recording's end). Failure modes:
    set `fail_initialize` to an error tuple such as `AUTH_FAILED` or `IPC_TIMEOUT`, call
    `drop_connection()` to lose the IPC link, give `depth` to offer market depth.
    `calls` lists every call as (function, args) for tests to inspect.
    """

    def __init__(
        self,
        recording,
        venue: str | None = None,
        *,
        suffix: str = "",
        clock_ms: int | None = None,
        digits: dict[str, int] | None = None,
    ):
        self.recording = Path(recording)
        manifest = json.loads((self.recording / "manifest.json").read_text(encoding="utf-8"))
        if venue is None:
            forex = [name for name, spec in manifest["venues"].items() if spec.get("asset_class") == "forex"]
            if len(forex) != 1:
                raise ValueError(f"{self.recording}: name the venue, forex venues are {forex}")
            venue = forex[0]
        self.venue = venue
        self.suffix = suffix
        self.clock_ms = int(manifest["end"]) if clock_ms is None else clock_ms
        self.fail_initialize: tuple[int, str] | None = None
        self.depth: dict[str, list[BookInfo]] = {}
        self.connected = False
        self.error = NO_IPC
        self.calls: list[tuple[str, tuple]] = []
        self.symbols: dict[str, _Symbol] = {}
        self._load(digits or {})
        for name, value in CONSTANTS.items():
            setattr(self, name, value)

    def _load(self, digits: dict[str, int]) -> None:
        def symbol_for(stem: str) -> _Symbol:
            base, _, quote = stem.partition("-")
            return self.symbols.setdefault(f"{base}{quote}{self.suffix}", _Symbol(base, quote))

        for path in sorted((self.recording / "quotes" / self.venue).glob("*.csv")):
            symbol_for(path.stem).quotes = _Series(path)
        for path in sorted((self.recording / "bars" / self.venue).glob("*.csv")):
            stem, _, timeframe = path.stem.partition("@")
            if timeframe in TIMEFRAME_BY_RECORDING:
                symbol_for(stem).bars[TIMEFRAME_BY_RECORDING[timeframe]] = _Series(path)
        for name, symbol in self.symbols.items():
            seen = [_decimals(row[key]) for row in symbol.quotes.rows for key in ("bid", "ask")] if symbol.quotes else []
            for series in symbol.bars.values():
                seen.extend(_decimals(row[key]) for row in series.rows for key in ("open", "high", "low", "close"))
            symbol.digits = digits.get(name, max(seen, default=5))

    # -- test controls -------------------------------------------------------------------

    def set_clock(self, clock_ms: int) -> None:
        self.clock_ms = int(clock_ms)

    def drop_connection(self, error: tuple[int, str] = NO_IPC) -> None:
        """The terminal closed or hung: every call fails until initialize() again."""
        self.connected = False
        self.error = error

    def called(self, function: str) -> list[tuple]:
        return [args for name, args in self.calls if name == function]

    # -- the MetaTrader5 API -------------------------------------------------------------

    def _fail(self, error: tuple[int, str]):
        self.error = error
        return None

    def _symbol(self, name: str) -> _Symbol | None:
        if not self.connected:
            return self._fail(NO_IPC if self.error[0] > -10000 else self.error)
        symbol = self.symbols.get(name)
        if symbol is None:
            return self._fail(NOT_FOUND)
        self.error = SUCCESS
        return symbol

    def initialize(self, path=None, *, login=None, password=None, server=None, timeout=None, portable=False):
        self.calls.append(("initialize", (path, {"login": login, "password": password, "server": server})))
        if self.fail_initialize is not None:
            self.connected = False
            self.error = self.fail_initialize
            return False
        self.connected = True
        self.error = SUCCESS
        return True

    def shutdown(self):
        self.calls.append(("shutdown", ()))
        self.connected = False
        self.error = NO_IPC

    def last_error(self):
        return self.error

    def symbol_info(self, name):
        self.calls.append(("symbol_info", (name,)))
        symbol = self._symbol(name)
        if symbol is None:
            return None
        return SymbolInfo(
            name=name,
            description=f"{symbol.base} vs {symbol.quote}",
            currency_base=symbol.base,
            currency_profit=symbol.quote,
            currency_margin=symbol.base,
            digits=symbol.digits,
            point=10.0**-symbol.digits,
            visible=symbol.selected,
            select=symbol.selected,
        )

    def symbol_select(self, name, enable=True):
        self.calls.append(("symbol_select", (name, enable)))
        symbol = self._symbol(name)
        if symbol is None:
            return False
        symbol.selected = bool(enable)
        return True

    def symbol_info_tick(self, name):
        self.calls.append(("symbol_info_tick", (name,)))
        symbol = self._symbol(name)
        if symbol is None:
            return None
        if not symbol.selected or symbol.quotes is None:
            return self._fail(CALL_FAILED)
        count = symbol.quotes.upto(self.clock_ms)
        if count == 0:
            return self._fail(CALL_FAILED)
        row = symbol.quotes.rows[count - 1]
        ts = int(row["ts"])
        return Tick(
            time=ts // 1000,
            bid=float(row["bid"] or 0),
            ask=float(row["ask"] or 0),
            last=0.0,
            volume=0,
            time_msc=ts,
            flags=TICK_FLAG_BID | TICK_FLAG_ASK,
            volume_real=0.0,
        )

    def copy_rates_from_pos(self, name, timeframe, start_pos, count):
        """Bars opened at or before the clock, position 0 the newest, returned oldest first.

        The recorded bar stands for the forming one (MT5 would show it still growing).
        """
        self.calls.append(("copy_rates_from_pos", (name, timeframe, start_pos, count)))
        symbol = self._symbol(name)
        if symbol is None:
            return None
        series = symbol.bars.get(timeframe)
        if series is None:
            return self._fail(CALL_FAILED)
        end = series.upto(self.clock_ms) - int(start_pos)
        rows = series.rows[max(0, end - int(count)) : max(0, end)]
        if not rows:
            return self._fail(CALL_FAILED)
        return np.array(
            [
                (
                    int(row["ts"]) // 1000,
                    float(row["open"]),
                    float(row["high"]),
                    float(row["low"]),
                    float(row["close"]),
                    int(float(row["volume"] or 0)),
                    0,
                    0,
                )
                for row in rows
            ],
            dtype=RATES_DTYPE,
        )

    def market_book_add(self, name):
        self.calls.append(("market_book_add", (name,)))
        if self._symbol(name) is None or name not in self.depth:
            return None
        return True

    def market_book_get(self, name):
        self.calls.append(("market_book_get", (name,)))
        if self._symbol(name) is None or name not in self.depth:
            return None
        return tuple(self.depth[name])
