"""A local venue that streams: Binance's public spot API, REST and WebSocket, on loopback,
its order books moved by the level2 events of a real Coinbase WebSocket recording.

Binance's protocol is the one served because ccxt.pro keeps a Binance book by its update
ids (REST snapshot `lastUpdateId`, stream `U`/`u`) and resyncs on a gap; ccxt follows
Coinbase's level2 channel without checking its `sequence_num`, so a gap there could not
be shown. The content is real: each Coinbase level2 event (`side`, `price_level`,
`new_quantity`, a level's new absolute size, 0 removes it) becomes one `depthUpdate`
(Binance's diff: `[price, new quantity]`, 0 removes) carrying an update id per level
changed. The test moves the market (`push`), opens a gap (`skip`), drops every connection
(`drop`) and refuses new ones (`refuse_streams`); ccxt's own WebSocket client, snapshot
alignment and parsing all run for real.

Bars come from the same recording's trades (`market_trades`), moved onto the wall clock so
its last minute is the current one (a bar's completion is judged by the clock). The first
minute's trades are history (REST `klines`); each `trade` applies the next one and streams
the klines it changed on `<id>@kline_<interval>`, as Binance does: a bar's closing update
(`x` true), then the next bar's; an interval without a trade is a bar at the last close
with volume 0.

Frames as Binance sends them on a raw stream (`/ws/<n>`, SUBSCRIBE method):
  {"result": null, "id": 1}
  {"e": "depthUpdate", "E": 1786309548483, "s": "BTCUSD", "U": 1001, "u": 1003, "b": [["65083.66", "0.2"]], "a": []}
  {"e": "24hrTicker", "E": ..., "s": "BTCUSD", "b": "65083.66", "B": "0.2", "a": "65083.67", "A": "0.23", ...}
  {"e": "kline", "E": ..., "s": "BTCUSD", "k": {"t": 1786309500000, "T": 1786309559999, "i": "1m", "o": "65091",
   "h": "65091", "l": "65083.56", "c": "65083.67", "v": "1.05", "x": false, ...}}
"""
from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path

from aiohttp import WSMsgType, web

from scanners.feeds.base import TIMEFRAME_MS
from tests.venue_server import VenueServer

SHARED = Path(__file__).resolve().parents[2] / "shared"
COINBASE_FRAMES = SHARED / "data" / "cryptofeed" / "coinbase_ws_2026-08-09.jsonl.gz"
COINBASE_RECORDING = SHARED / "recordings" / "coinbase-ws-2026-08-09"
FIRST_UPDATE_ID = 1000


def coinbase_messages(channel: str, path: Path = COINBASE_FRAMES):
    """The received messages of one channel in cryptofeed's recording (a header line, then {t, conn, ts, data})."""
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        for line in lines:
            frame = json.loads(line)
            if frame.get("t") == "recv":
                message = json.loads(frame["data"])
                if message.get("channel") == channel:
                    yield message


def coinbase_level2(path: Path = COINBASE_FRAMES) -> dict[str, dict]:
    """{product: {"snapshot": [(side, price, size)], "events": [[(side, price, size), ...], ...]}} of
    the received level2 frames (cryptofeed's recording: a header line, then {t, conn, ts, data})."""
    products: dict[str, dict] = {}
    for message in coinbase_messages("l2_data", path):
        for event in message.get("events", []):
            product = products.setdefault(event["product_id"], {"snapshot": [], "events": []})
            changes = [("bids" if u["side"] == "bid" else "asks", u["price_level"], u["new_quantity"])
                       for u in event.get("updates", [])]
            if event["type"] == "snapshot":
                product["snapshot"] = changes
            elif changes:
                product["events"].append(changes)
    return products


def coinbase_trades(path: Path = COINBASE_FRAMES) -> dict[str, list[tuple[int, str, str]]]:
    """{product: [(ts ms, price, size), ...]} of the received market_trades frames, by time, each trade once."""
    products: dict[str, dict] = {}
    for message in coinbase_messages("market_trades", path):
        for event in message.get("events", []):
            for trade in event.get("trades", []):
                ts = int(datetime.fromisoformat(trade["time"]).timestamp() * 1000)
                products.setdefault(trade["product_id"], {})[trade["trade_id"]] = (ts, trade["price"], trade["size"])
    return {product: sorted(trades.values(), key=lambda t: t[0]) for product, trades in products.items()}


@dataclass
class StreamTrades:
    """One market's trades (on the wall clock) and how many the venue has seen; its klines derive from those."""

    market_id: str
    trades: list
    position: int = 0

    def klines(self, span: int) -> list[list]:
        """[open ts, open, high, low, close, volume] of each interval from the first trade seen to the last."""
        bars: list[list] = []
        for ts, price, size in self.trades[:self.position]:
            start = ts // span * span
            while bars and bars[-1][0] + span < start:
                close = bars[-1][4]
                bars.append([bars[-1][0] + span, close, close, close, close, "0"])
            if bars and bars[-1][0] == start:
                bar = bars[-1]
                bar[2], bar[3] = max(bar[2], price, key=Decimal), min(bar[3], price, key=Decimal)
                bar[4], bar[5] = price, format(Decimal(bar[5]) + Decimal(size), "f")
            else:
                bars.append([start, price, price, price, price, size])
        return bars


@dataclass
class StreamBook:
    """One market's book as the venue keeps it, and the update id of its last change."""

    market_id: str
    events: list
    sides: dict = field(default_factory=lambda: {"bids": {}, "asks": {}})
    last_id: int = FIRST_UPDATE_ID - 1
    position: int = 0  # the next event to apply

    def apply(self, changes) -> tuple[int, int]:
        first = self.last_id + 1
        for side, price, size in changes:
            if Decimal(size) == 0:
                self.sides[side].pop(Decimal(price), None)
            else:
                self.sides[side][Decimal(price)] = (price, size)
        self.last_id += len(changes)
        return first, self.last_id

    def levels(self, side: str, depth: int) -> list[list[str]]:
        prices = sorted(self.sides[side], reverse=side == "bids")[:depth]
        return [list(self.sides[side][p]) for p in prices]


class BinanceStreamServer(VenueServer):
    """`binance` on loopback: REST (markets from the Coinbase recording, depth and ticker from
    the live book) and the diff depth and ticker streams. `urls()` gives ccxt its base."""

    def __init__(self, frames: Path = COINBASE_FRAMES, recording: Path = COINBASE_RECORDING, timeout_s: float = 5):
        super().__init__(recording, shapes={"binance": "coinbase"}, timeout_s=timeout_s)
        self.books: dict[str, StreamBook] = {}
        for product, level2 in coinbase_level2(frames).items():
            symbol = product.replace("-", "/")
            book = self.books[symbol] = StreamBook(product.replace("-", ""), level2["events"])
            book.apply(level2["snapshot"])
        self.trades: dict[str, StreamTrades] = {}
        recorded = coinbase_trades(frames)
        last_minute = max(trades[-1][0] for trades in recorded.values()) // 60_000 * 60_000
        shift = int(time.time() * 1000) // 60_000 * 60_000 - last_minute  # whole minutes: bar boundaries hold
        for product, trades in recorded.items():
            moved = [(ts + shift, price, size) for ts, price, size in trades]
            history = moved[0][0] // 60_000 * 60_000 + 60_000  # the first minute's trades are history
            self.trades[product.replace("-", "/")] = StreamTrades(
                product.replace("-", ""), moved, sum(1 for ts, _, _ in moved if ts < history))
        self.kline_requests: Counter = Counter()  # (symbol, interval) of each REST klines request
        self.connections: list[tuple[web.WebSocketResponse, set]] = []
        self.refuse_streams = False
        self.stream_attempts = 0  # WebSocket upgrade requests, refused or not
        self.sent: list[dict] = []
        self.depth_limits: list[int] = []  # of each REST depth request: a stream's snapshot asks deeper than a poll

    # control (from the test's thread) ----------------------------------------
    def _run(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    def subscribed(self, stream: str) -> bool:
        return any(stream in streams for _, streams in list(self.connections))

    def push(self, symbol: str) -> dict:
        """Apply the recording's next level2 event and stream it (and a ticker); returns the depthUpdate sent."""
        return self._run(self._push(symbol, send=True))

    def skip(self, symbol: str, depth: int) -> list[dict]:
        """Open a gap: apply events unsent until one has changed the top `depth` levels; returns them."""
        book = self.books[symbol]
        top = (book.levels("bids", depth), book.levels("asks", depth))
        skipped = []
        while (book.levels("bids", depth), book.levels("asks", depth)) == top:
            skipped.append(self._run(self._push(symbol, send=False)))
        return skipped

    def drop(self) -> int:
        """Close every streaming connection from the server's side; returns how many."""
        return self._run(self._drop())

    def trade(self, symbol: str) -> list[dict]:
        """Apply the recording's next trade and stream the klines it changed; returns the kline events sent."""
        return self._run(self._trade(symbol))

    def klines(self, symbol: str, interval: str) -> list[list]:
        """The venue's klines of `symbol` so far, the last one forming."""
        return self._run(self._klines(symbol, interval))

    async def _klines(self, symbol, interval):
        return self.trades[symbol].klines(TIMEFRAME_MS[interval])

    async def _trade(self, symbol: str) -> list[dict]:
        market = self.trades[symbol]
        if market.position >= len(market.trades):
            raise IndexError(f"the recording has no more {symbol} trades")
        intervals = [i for i in TIMEFRAME_MS if self.subscribed(f"{market.market_id.lower()}@kline_{i}")]
        before = {i: market.klines(TIMEFRAME_MS[i]) for i in intervals}
        market.position += 1
        now = int(time.time() * 1000)
        events = []
        for interval in intervals:
            after = market.klines(TIMEFRAME_MS[interval])
            last = before[interval][-1][0] if before[interval] else after[0][0]
            changed = [k for k in after if k[0] >= last]  # the bar that was forming (now closed if others follow), then newer ones
            for n, k in enumerate(changed):
                event = self._kline(market.market_id, interval, k, closed=n < len(changed) - 1, now=now)
                await self._send(f"{market.market_id.lower()}@kline_{interval}", event)
                events.append(event)
        return events

    @staticmethod
    def _kline(market_id: str, interval: str, k: list, closed: bool, now: int) -> dict:
        return {"e": "kline", "E": now, "s": market_id, "k": {
            "t": k[0], "T": k[0] + TIMEFRAME_MS[interval] - 1, "s": market_id, "i": interval, "f": 0, "L": 0,
            "o": k[1], "c": k[4], "h": k[2], "l": k[3], "v": k[5], "n": 0, "x": closed, "q": "0", "V": "0", "Q": "0", "B": "0",
        }}

    def depth(self, symbol: str, depth: int) -> tuple[list, list]:
        return self._run(self._levels(symbol, depth))

    async def _levels(self, symbol, depth):
        book = self.books[symbol]
        return book.levels("bids", depth), book.levels("asks", depth)

    async def _push(self, symbol: str, send: bool) -> dict:
        book = self.books[symbol]
        changes = book.events[book.position]
        book.position += 1
        first, last = book.apply(changes)
        now = int(time.time() * 1000)
        update = {
            "e": "depthUpdate", "E": now, "s": book.market_id, "U": first, "u": last,
            "b": [[p, s] for side, p, s in changes if side == "bids"],
            "a": [[p, s] for side, p, s in changes if side == "asks"],
        }
        if send:
            await self._send(f"{book.market_id.lower()}@depth", update)
            await self._send(f"{book.market_id.lower()}@ticker", self._ticker(book, now))
            self.sent.append(update)
        return update

    def _ticker(self, book: StreamBook, now: int) -> dict:
        (bid, bid_size), (ask, ask_size) = book.levels("bids", 1)[0], book.levels("asks", 1)[0]
        mid = format((Decimal(bid) + Decimal(ask)) / 2, "f")
        return {
            "e": "24hrTicker", "E": now, "s": book.market_id, "p": "0", "P": "0", "w": mid, "x": mid, "c": mid,
            "Q": "0", "b": bid, "B": bid_size, "a": ask, "A": ask_size, "o": mid, "h": mid, "l": mid, "v": "0",
            "q": "0", "O": now - 86_400_000, "C": now, "F": 0, "L": 0, "n": 0,
        }

    async def _send(self, stream_prefix: str, payload: dict) -> None:
        for ws, streams in list(self.connections):
            if any(s.startswith(stream_prefix) for s in streams) and not ws.closed:
                await ws.send_str(json.dumps(payload))

    async def _drop(self) -> int:
        connections = list(self.connections)
        for ws, _ in connections:
            await ws.close(code=1001, message=b"going away")
        return len(connections)

    # routes --------------------------------------------------------------------
    def add_routes(self, app) -> None:
        super().add_routes(app)
        app.router.add_get("/binance/ws/{stream}", self.binance_stream)

    async def binance_depth(self, request):
        symbol = self._binance_symbol(request.query.get("symbol", ""))
        if symbol is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(request.query.get("limit", "100"))
        self.depth_limits.append(limit)
        book = self.books[symbol]
        return web.json_response({"lastUpdateId": book.last_id, "bids": book.levels("bids", limit),
                                  "asks": book.levels("asks", limit)})

    async def binance_klines(self, request):
        symbol = self._binance_symbol(request.query.get("symbol", ""))
        interval = request.query.get("interval", "")
        if symbol is None or interval not in TIMEFRAME_MS:
            return web.json_response({"code": -1121, "msg": "Invalid symbol or interval."}, status=400)
        self.kline_requests[(symbol, interval)] += 1
        span = TIMEFRAME_MS[interval]
        klines = self.trades[symbol].klines(span)[-int(request.query.get("limit", "500")):]
        return web.json_response([[*k, k[0] + span - 1, "0", 0, "0", "0", "0"] for k in klines])

    async def binance_tickers(self, request):
        wanted = request.query.get("symbols")
        ids = set(json.loads(wanted)) if wanted else None
        now = int(time.time() * 1000)
        rows = []
        for symbol, book in self.books.items():
            if ids is None or book.market_id in ids:
                ticker = self._ticker(book, now)
                rows.append({
                    "symbol": book.market_id, "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": ticker["w"],
                    "prevClosePrice": ticker["x"], "lastPrice": ticker["c"], "lastQty": "0", "bidPrice": ticker["b"],
                    "bidQty": ticker["B"], "askPrice": ticker["a"], "askQty": ticker["A"], "openPrice": ticker["o"],
                    "highPrice": ticker["h"], "lowPrice": ticker["l"], "volume": "0", "quoteVolume": "0",
                    "openTime": ticker["O"], "closeTime": now, "firstId": 0, "lastId": 0, "count": 0,
                })
        return web.json_response(rows)

    async def binance_stream(self, request):
        self.stream_attempts += 1
        if self.refuse_streams:
            return web.Response(status=503, text="stream unavailable")
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        streams: set = set()
        entry = (ws, streams)
        self.connections.append(entry)
        try:
            async for message in ws:
                if message.type != WSMsgType.TEXT:
                    continue
                request_body = json.loads(message.data)
                method = request_body.get("method")
                if method == "SUBSCRIBE":
                    streams.update(request_body.get("params", []))
                elif method == "UNSUBSCRIBE":
                    streams.difference_update(request_body.get("params", []))
                await ws.send_str(json.dumps({"result": None, "id": request_body.get("id")}))
        finally:
            self.connections.remove(entry)
        return ws

    def stop(self) -> None:
        if self._loop is not None and self._loop.is_running():
            self._run(self._drop())
        super().stop()
