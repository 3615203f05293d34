"""Forex quotes, bars and depth from a MetaTrader 5 terminal (market data only).

The `MetaTrader5` package talks to a running terminal over local IPC and exists only for
Windows. Elsewhere this feed reports itself unavailable instead of failing, so the desk
runs on with its other feeds; on Linux a terminal under Wine can be reached through the
mt5linux bridge (`MT5_BRIDGE=host:port`), whose client mimics the package's API. Any
object with that API can be injected as `module` (tests inject a double).

This module reads prices and nothing else: it never places, checks or lists trades.
MT5 hands prices back as floats; each is turned into a `Decimal` with the symbol's
`digits`, so 1.08123 arrives as exactly Decimal("1.08123").
"""
from __future__ import annotations

import logging
import os
import sys
import threading
from collections import deque
from datetime import datetime, timezone
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any, Callable

from .base import (
    DEGRADED,
    DOWN,
    OK,
    UNAVAILABLE,
    Bar,
    Book,
    Feed,
    FeedStatus,
    FeedStatusBoard,
    Instrument,
    TIMEFRAME_MS,
    Quote,
    Venue,
    wall_ms,
)

logger = logging.getLogger(__name__)

DEFAULT_VENUE = "mt5"
OFF_WINDOWS_REASON = "MetaTrader5 runs only on Windows; on Linux see README (mt5linux bridge)"
NOT_INSTALLED_REASON = "the MetaTrader5 package is not installed (pip install -r requirements.txt)"

# Our timeframe -> (MT5 constant name, its value in the MetaTrader5 package).
TIMEFRAMES = {
    "1m": ("TIMEFRAME_M1", 1),
    "5m": ("TIMEFRAME_M5", 5),
    "15m": ("TIMEFRAME_M15", 15),
    "1h": ("TIMEFRAME_H1", 16385),
    "4h": ("TIMEFRAME_H4", 16388),
    "1d": ("TIMEFRAME_D1", 16408),
}
BOOK_TYPE_SELL, BOOK_TYPE_BUY, BOOK_TYPE_SELL_MARKET, BOOK_TYPE_BUY_MARKET = 1, 2, 3, 4

# last_error() codes from -10000 down mean the IPC link to the terminal is gone.
IPC_ERROR_LIMIT = -10000
SUFFIX_SEPARATORS = ".-_#!+"


def unified_symbol(mt5_name: str, suffix: str = "") -> str:
    """`EURUSD` -> `EUR/USD`, dropping a broker suffix (`EURUSD.m`, `EURUSDm`, `EURUSD#`).

    A configured `suffix` is removed first; without one, anything after a separator or a
    lower-case tail is taken for the suffix, since currency codes are upper case.
    Metals quoted like pairs pass too (`XAUUSD` -> `XAU/USD`); index CFDs (`US30`) raise
    ValueError, since every other part of the desk expects BASE/QUOTE.
    """
    core = mt5_name.strip()
    if suffix and core.endswith(suffix):
        core = core[: -len(suffix)]
    cut = next((i for i, ch in enumerate(core) if ch in SUFFIX_SEPARATORS), len(core))
    core = core[:cut].rstrip("abcdefghijklmnopqrstuvwxyz")
    if len(core) != 6 or not core.isalpha() or not core.isupper():
        raise ValueError(f"MT5 symbol {mt5_name!r} is not a currency pair like EURUSD (set MT5_SYMBOL_SUFFIX?)")
    return f"{core[:3]}/{core[3:]}"


def price_decimal(value: Any, digits: int | None) -> Decimal | None:
    """An MT5 float price as the Decimal the broker meant; 0 means MT5 has no price."""
    if value is None:
        return None
    number = float(value)
    if number == 0 or number != number or number in (float("inf"), float("-inf")):
        return None
    exact = Decimal(repr(number))
    if digits is None:
        return exact
    return exact.quantize(Decimal(1).scaleb(-int(digits)), rounding=ROUND_HALF_EVEN)


def size_decimal(value: Any) -> Decimal | None:
    """An MT5 float volume as a Decimal (shortest repr, so 0.1 stays 0.1)."""
    if value is None:
        return None
    number = float(value)
    return Decimal(repr(number)) if number > 0 else None


def forex_market_open(ms: int) -> bool:
    """Rough forex week: Sunday 22:00 UTC to Friday 21:00 UTC (lenient about DST at both ends)."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    weekday, hour = moment.weekday(), moment.hour
    if weekday == 5:
        return False
    if weekday == 6:
        return hour >= 22
    if weekday == 4:
        return hour < 21
    return True


def _env_int(name: str) -> int | None:
    text = os.environ.get(name, "").strip()
    return int(text) if text else None


def _env_offset_ms(name: str) -> int:
    """Broker server clocks run ahead of UTC (often +2/+3 h) and MT5 stamps in server time."""
    text = os.environ.get(name, "").strip()
    if not text:
        return 0
    try:
        return int(float(text) * 3_600_000)
    except ValueError:
        raise ValueError(f"{name} must be hours, e.g. 2 or 3, not {text!r}") from None


class MetaTraderFeed(Feed):
    """One MT5 terminal as one forex venue (default name "mt5", taker fee 0).

    Connects on first use; when the terminal cannot be reached the venue is down with
    MT5's own `last_error()`, and `refresh()` tries again. Symbols are selected into
    Market Watch once per connection.
    """

    name = "mt5"

    def __init__(
        self,
        symbols: list[str],
        *,
        module: Any = None,
        venue: str = DEFAULT_VENUE,
        symbol_suffix: str | None = None,
        login: int | None = None,
        server: str | None = None,
        path: str | None = None,
        bridge: str | None = None,
        clock: Callable[[], int] | None = None,
        stale_after_ms: int = 60_000,
        server_utc_offset_ms: int | None = None,
        history_size: int = 1000,
    ):
        self.venue = venue
        self.symbol_suffix = symbol_suffix if symbol_suffix is not None else os.environ.get("MT5_SYMBOL_SUFFIX", "")
        self.stale_after_ms = stale_after_ms
        self._clock = clock or wall_ms
        self.server_utc_offset_ms = server_utc_offset_ms or 0
        self.history_size = history_size
        self._history: dict[str, deque[Quote]] = {}
        self._board = FeedStatusBoard()
        self._lock = threading.RLock()

        self._mt5_names: dict[str, str] = {}  # unified -> MT5 name
        self.unmapped: list[str] = []
        for mt5_name in symbols:
            try:
                self._mt5_names.setdefault(unified_symbol(mt5_name, self.symbol_suffix), mt5_name)
            except ValueError:
                self.unmapped.append(mt5_name)

        self._module = module
        self._module_factory: Callable[[], Any] | None = None
        self._unavailable_reason = ""
        self._initialize_args: tuple = ()
        self._initialize_kwargs: dict = {}
        self._attempted = False
        self._connected = False
        self._digits: dict[str, int] = {}
        self._unknown: list[str] = []
        self._book_subscribed: set[str] = set()
        self._book_unsupported: set[str] = set()

        try:
            self._configure_login(login, server, path)
            if server_utc_offset_ms is None:
                self.server_utc_offset_ms = _env_offset_ms("MT5_SERVER_UTC_OFFSET_HOURS")
        except ValueError as exc:
            self._unavailable_reason = str(exc)
        if module is None and not self._unavailable_reason:
            self._choose_module(bridge if bridge is not None else os.environ.get("MT5_BRIDGE", ""))
        if self._unavailable_reason:
            self._set_status(UNAVAILABLE, self._unavailable_reason, error=self._unavailable_reason)
        else:
            waiting = self._board.get(self.venue)
            waiting.state, waiting.detail = DOWN, "not connected yet"

    # -- setup ---------------------------------------------------------------------------

    def _configure_login(self, login, server, path) -> None:
        """Only what initialize() needs to attach: the terminal keeps the password."""
        try:
            login = login if login is not None else _env_int("MT5_LOGIN")
        except ValueError:
            raise ValueError("MT5_LOGIN must be the account number") from None
        server = server if server is not None else os.environ.get("MT5_SERVER", "").strip() or None
        path = path if path is not None else os.environ.get("MT5_PATH", "").strip() or None
        self._initialize_args = (path,) if path else ()
        self._initialize_kwargs = {k: v for k, v in (("login", login), ("server", server)) if v is not None}

    def _choose_module(self, bridge: str) -> None:
        """Pick the bridge, the Windows package, or nothing, without importing anything heavy here."""
        if bridge:
            host, _, port = bridge.strip().rpartition(":")
            if not host or not port.isdigit():
                self._unavailable_reason = f"MT5_BRIDGE must be host:port, not {bridge!r}"
                return
            try:
                from mt5linux import MetaTrader5 as BridgeClient
            except ImportError:
                self._unavailable_reason = "MT5_BRIDGE is set but mt5linux is not installed (pip install mt5linux)"
                return
            self._module_factory = lambda: BridgeClient(host=host, port=int(port))
            return
        if sys.platform != "win32":
            self._unavailable_reason = OFF_WINDOWS_REASON
            return
        try:
            import MetaTrader5
        except ImportError:
            self._unavailable_reason = NOT_INSTALLED_REASON
            return
        self._module = MetaTrader5

    # -- connection ----------------------------------------------------------------------

    @property
    def available(self) -> bool:
        return not self._unavailable_reason

    def _set_status(self, state: str, detail: str, error: str = "") -> None:
        if state == OK:
            self._board.mark_ok(self.venue, detail)
            return
        self._board.mark_error(self.venue, state, error or detail)
        self._board.get(self.venue).detail = detail

    def _last_error(self) -> tuple[int, str]:
        try:
            code, message = self._module.last_error()
            return int(code), str(message)
        except Exception as exc:  # a broken bridge cannot even say what went wrong
            return IPC_ERROR_LIMIT, f"{type(exc).__name__}: {exc}"

    def _connect(self) -> bool:
        """initialize() and select the symbols; on failure the venue is down with MT5's reason."""
        self._attempted = True
        self._connected = False
        try:
            if self._module is None and self._module_factory is not None:
                self._module = self._module_factory()
            ok = self._module.initialize(*self._initialize_args, **self._initialize_kwargs)
        except Exception as exc:
            if self._module_factory is not None:
                self._module = None
            reason = f"cannot reach the MT5 terminal: {type(exc).__name__}: {exc}"
            self._set_status(DOWN, reason, error=reason)
            return False
        if not ok:
            code, message = self._last_error()
            reason = f"initialize failed: ({code}, {message!r})"
            self._set_status(DOWN, reason, error=reason)
            logger.warning("mt5 %s", reason)
            return False
        self._connected = True
        self._digits.clear()
        self._unknown = []
        self._book_subscribed.clear()
        self._book_unsupported.clear()
        for mt5_name in self._mt5_names.values():
            self._select(mt5_name)
        return self._connected

    def _select(self, mt5_name: str) -> None:
        info = self._call("symbol_info", mt5_name)
        if info is None or not self._call("symbol_select", mt5_name, True):
            if self._connected:
                self._unknown.append(mt5_name)
            return
        self._digits[mt5_name] = int(info.digits)

    def _call(self, function: str, *args):
        """One MT5 call; a lost IPC link (or a broken bridge) marks the venue down for refresh() to mend."""
        with self._lock:
            try:
                result = getattr(self._module, function)(*args)
            except Exception as exc:
                self._lost(f"{function} raised {type(exc).__name__}: {exc}")
                return None
            if result is None:
                code, message = self._last_error()
                if code <= IPC_ERROR_LIMIT:
                    self._lost(f"{function} failed: ({code}, {message!r})")
            return result

    def _lost(self, reason: str) -> None:
        self._connected = False
        self._set_status(DOWN, reason, error=reason)
        logger.warning("mt5 connection lost: %s", reason)

    def _ready(self) -> bool:
        if not self.available:
            return False
        with self._lock:
            if not self._attempted:
                self._connect()
                if self._connected:
                    self._assess()
            return self._connected

    def _assess(self) -> None:
        """Status from the newest tick: a terminal whose ticks stopped while the market is open is degraded."""
        now = self.now()
        ages: list[tuple[str, int]] = []
        for symbol, mt5_name in self._mt5_names.items():
            if mt5_name in self._unknown:
                continue
            quote = self._observe(symbol, mt5_name)
            if not self._connected:
                return
            if quote is not None:
                ages.append((symbol, now - quote.ts))
        problems = []
        if self._unknown:
            problems.append("not offered by the broker: " + ", ".join(self._unknown))
        if self.unmapped:
            problems.append("not a currency pair: " + ", ".join(self.unmapped))
        market_open = forex_market_open(now)
        if ages:
            newest = min(age for _, age in ages)
            if market_open and newest > self.stale_after_ms:
                problems.append(f"terminal stale: newest tick {newest // 1000} s old")
        elif self._mt5_names:
            problems.append("no ticks yet")
        parts = [] if market_open else ["forex market closed (weekend)"]
        if ages:
            parts.append("tick age " + ", ".join(f"{symbol} {age // 1000} s" for symbol, age in ages))
        detail = "; ".join(problems + parts)
        if problems:
            self._set_status(DEGRADED, detail, error="; ".join(problems))
        else:
            self._set_status(OK, detail)

    def _tick_ms(self, tick) -> int:
        """The tick's time in UTC, never after our clock (a wrong server offset must not make a price younger than now)."""
        ms = int(getattr(tick, "time_msc", 0) or 0) or int(tick.time) * 1000
        return min(ms - self.server_utc_offset_ms, self.now())

    # -- Feed ----------------------------------------------------------------------------

    def venues(self) -> dict[str, Venue]:
        return {self.venue: Venue(self.venue, "forex", Decimal("0"))}

    def instruments(self) -> list[Instrument]:
        return [
            Instrument(
                self.venue,
                symbol,
                "forex",
                has_quotes=True,
                has_books=mt5_name in self._book_subscribed,
                timeframes=tuple(TIMEFRAMES),
            )
            for symbol, mt5_name in self._mt5_names.items()
        ]

    def now(self) -> int:
        return self._clock()

    def _mt5_name(self, venue: str, symbol: str) -> str | None:
        if venue != self.venue:
            return None
        return self._mt5_names.get(symbol)

    def quote(self, venue: str, symbol: str) -> Quote | None:
        mt5_name = self._mt5_name(venue, symbol)
        if mt5_name is None or not self._ready():
            return None
        return self._observe(symbol, mt5_name)

    def _observe(self, symbol: str, mt5_name: str) -> Quote | None:
        """The current tick as a Quote, remembered for quote_history()."""
        tick = self._call("symbol_info_tick", mt5_name)
        if tick is None:
            return None
        digits = self._digits.get(mt5_name)
        bid, ask = price_decimal(tick.bid, digits), price_decimal(tick.ask, digits)
        if bid is None and ask is None:
            return None
        quote = Quote(self.venue, symbol, self._tick_ms(tick), bid, ask)
        seen = self._history.setdefault(symbol, deque(maxlen=self.history_size))
        if not seen or seen[-1] != quote:
            seen.append(quote)
        return quote

    def quote_history(self, venue: str, symbol: str, since: int) -> list[Quote]:
        """Quotes seen by quote() and refresh() in (since, now()]; ticks between polls are not fetched."""
        if self._mt5_name(venue, symbol) is None:
            return []
        now = self.now()
        return [quote for quote in self._history.get(symbol, ()) if since < quote.ts <= now]

    def book(self, venue: str, symbol: str, depth: int | None = None) -> Book | None:
        """Depth where the broker offers it (market_book_add succeeds), else None."""
        mt5_name = self._mt5_name(venue, symbol)
        if mt5_name is None or not self._ready() or mt5_name in self._book_unsupported:
            return None
        if mt5_name not in self._book_subscribed:
            if not self._call("market_book_add", mt5_name):
                if self._connected:
                    self._book_unsupported.add(mt5_name)
                return None
            self._book_subscribed.add(mt5_name)
        entries = self._call("market_book_get", mt5_name)
        if not entries:
            return None
        digits = self._digits.get(mt5_name)
        bids, asks = [], []
        for entry in entries:
            price = price_decimal(entry.price, digits)
            size = size_decimal(getattr(entry, "volume_dbl", None) or entry.volume)
            if price is None or size is None:
                continue
            if int(entry.type) in (BOOK_TYPE_BUY, BOOK_TYPE_BUY_MARKET):
                bids.append((price, size))
            elif int(entry.type) in (BOOK_TYPE_SELL, BOOK_TYPE_SELL_MARKET):
                asks.append((price, size))
        bids.sort(key=lambda level: level[0], reverse=True)
        asks.sort(key=lambda level: level[0])
        if depth is not None:
            bids, asks = bids[:depth], asks[:depth]
        if not bids and not asks:
            return None
        return Book(venue, symbol, self.now(), tuple(bids), tuple(asks))

    def bars(self, venue: str, symbol: str, timeframe: str, limit: int = 100) -> list[Bar]:
        """Completed bid bars, oldest first. MT5's position 0 is the bar still forming: its close
        is not final and its close time lies ahead, so it is left out, as every feed does."""
        mt5_name = self._mt5_name(venue, symbol)
        if mt5_name is None or timeframe not in TIMEFRAMES or limit <= 0 or not self._ready():
            return []
        constant_name, default_value = TIMEFRAMES[timeframe]
        mt5_timeframe = getattr(self._module, constant_name, default_value)
        rates = self._call("copy_rates_from_pos", mt5_name, mt5_timeframe, 0, int(limit) + 1)
        if rates is None or len(rates) == 0:
            return []
        digits = self._digits.get(mt5_name)
        now, span = self.now(), TIMEFRAME_MS[timeframe]
        bars = []
        for rate in rates:
            prices = [price_decimal(rate[field], digits) for field in ("open", "high", "low", "close")]
            if any(price is None for price in prices):
                continue
            opened = int(rate["time"]) * 1000 - self.server_utc_offset_ms
            if opened + span > now:
                continue
            tick_volume = int(rate["tick_volume"])
            bars.append(Bar(opened, *prices, volume=Decimal(tick_volume) if tick_volume else None))
        return bars[-int(limit):]

    def status(self) -> list[FeedStatus]:
        self._ready()
        return self._board.all()

    def refresh(self, symbols: dict[str, list[str]] | None = None) -> bool:
        """Reconnect when down, then judge freshness from the newest tick (True when connected:
        the terminal's market is read live)."""
        if not self.available:
            return False
        with self._lock:
            if not self._connected:
                self._connect()
            if self._connected:
                self._assess()
            return self._connected

    def close(self) -> None:
        """shutdown() the link; the feed stays closed until an explicit refresh()."""
        with self._lock:
            if self._attempted and self._module is not None:
                try:
                    self._module.shutdown()
                except Exception as exc:
                    logger.warning("mt5 shutdown failed: %s", exc)
            self._connected = False
            self._attempted = True
            if self.available:
                self._set_status(DOWN, "closed")
