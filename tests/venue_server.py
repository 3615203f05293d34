"""A local HTTP server that speaks the public REST API of binance and kraken, as ccxt
calls it, answering from a recording as of a settable clock.

The internet is out of reach here, so the ccxt feed is tested against this: ccxt's own
request building, HTTP client, error mapping and parsing all run for real. Faults
(timeouts, 5xx, garbage JSON, rate-limit replies) are injected per venue.
"""
from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from decimal import Decimal

from aiohttp import web

from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed

KRAKEN_ASSETS = {"BTC": "XXBT", "ETH": "XETH", "USD": "ZUSD", "EUR": "ZEUR", "USDT": "USDT", "USDC": "USDC"}
KRAKEN_ALT = {"BTC": "XBT"}
FAULTS = ("timeout", "5xx", "garbage", "ratelimit", "depth_5xx")  # depth_5xx: only order-book requests fail


def text(value: Decimal | None) -> str:
    return "0" if value is None else format(value, "f")


def tick_of(value: Decimal) -> str:
    exponent = value.normalize().as_tuple().exponent
    return format(Decimal(1).scaleb(min(exponent, 0)), "f")


class VenueServer:
    """Serves `recording` venues as binance- and kraken-shaped APIs under /binance and /kraken.

    `shapes` maps a served name (binance, kraken) to the recording venue whose data it
    serves. Set `clock` (epoch ms) to move the market; `fault(venue, kind)` injects one of
    FAULTS until `clear()`.
    """

    def __init__(self, recording, shapes: dict[str, str] | None = None, clock: int | None = None, timeout_s: float = 30):
        self.reader = RecordingReader(recording)
        self.shapes = shapes or {"binance": "binance", "kraken": "kraken"}
        self.feed = ReplayFeed(self.reader, ReplayClock.stepped(clock if clock is not None else self.reader.start))
        self.requests: Counter = Counter()
        self.faults: dict[str, str] = {}
        self.timeout_s = timeout_s
        self.base_url = ""
        self._loop = None
        self._runner = None
        self._thread = None

    # control ---------------------------------------------------------------
    @property
    def clock(self) -> int:
        return self.feed.now()

    @clock.setter
    def clock(self, ts: int) -> None:
        self.feed.at(ts)

    def fault(self, venue: str, kind: str) -> None:
        if kind not in FAULTS:
            raise ValueError(kind)
        self.faults[venue] = kind

    def clear(self, venue: str | None = None) -> None:
        if venue is None:
            self.faults.clear()
        else:
            self.faults.pop(venue, None)

    def urls(self) -> dict[str, str]:
        return {venue: f"{self.base_url}/{venue}" for venue in self.shapes}

    def symbols(self, venue: str) -> list[str]:
        source = self.shapes[venue]
        return sorted({i.symbol for i in self.reader.instruments() if i.venue == source})

    # lifecycle -------------------------------------------------------------
    def start(self) -> VenueServer:
        ready = threading.Event()

        def run():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            app = web.Application(middlewares=[self._middleware])
            self.add_routes(app)
            self._runner = web.AppRunner(app, access_log=None)
            self._loop.run_until_complete(self._runner.setup())
            site = web.TCPSite(self._runner, "127.0.0.1", 0)
            self._loop.run_until_complete(site.start())
            port = site._server.sockets[0].getsockname()[1]
            self.base_url = f"http://127.0.0.1:{port}"
            ready.set()
            self._loop.run_forever()
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()

        self._thread = threading.Thread(target=run, daemon=True, name="venue-server")
        self._thread.start()
        ready.wait(10)
        return self

    def add_routes(self, app) -> None:
        app.router.add_get("/binance/api/v3/exchangeInfo", self.binance_exchange_info)
        app.router.add_get("/binance/api/v3/ticker/24hr", self.binance_tickers)
        app.router.add_get("/binance/api/v3/depth", self.binance_depth)
        app.router.add_get("/binance/api/v3/klines", self.binance_klines)
        app.router.add_get("/binance/api/v3/time", self.binance_time)
        app.router.add_get("/kraken/0/public/AssetPairs", self.kraken_asset_pairs)
        app.router.add_get("/kraken/0/public/Assets", self.kraken_assets)
        app.router.add_get("/kraken/0/public/Ticker", self.kraken_ticker)
        app.router.add_get("/kraken/0/public/Depth", self.kraken_depth)
        app.router.add_get("/kraken/0/public/OHLC", self.kraken_ohlc)
        app.router.add_get("/kraken/0/public/Time", self.kraken_time)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # plumbing --------------------------------------------------------------
    @web.middleware
    async def _middleware(self, request, handler):
        venue = request.path.split("/")[1]
        self.requests[(venue, request.path.split("/", 2)[2])] += 1
        fault = self.faults.get(venue)
        if fault == "timeout":
            await asyncio.sleep(self.timeout_s)
        elif fault == "depth_5xx" and request.path.lower().endswith("/depth"):
            return web.Response(status=503, text="<html>503 Service Temporarily Unavailable</html>")
        elif fault == "5xx":
            return web.Response(status=503, text="<html>503 Service Temporarily Unavailable</html>")
        elif fault == "garbage":
            return web.Response(status=200, text='{"symbols": [ {"oops', content_type="application/json")
        elif fault == "ratelimit":
            if venue == "binance":
                return web.json_response({"code": -1003, "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE."}, status=429)
            return web.json_response({"error": ["EAPI:Rate limit exceeded"]})
        return await handler(request)

    def _market_rows(self, venue: str):
        source = self.shapes[venue]
        for symbol in self.symbols(venue):
            base, quote = symbol.split("/")
            yield symbol, base, quote.split(":")[0], source

    def _price_sample(self, source: str, symbol: str) -> Decimal:
        for series in (self.reader.quotes.get((source, symbol)),):
            if series is not None and series.ts:
                return Decimal(series.row(0)[0] or "1")
        return Decimal("0.01")

    # binance ---------------------------------------------------------------
    def _binance_id(self, symbol: str) -> str:
        return symbol.replace("/", "")

    def _binance_symbol(self, market_id: str) -> str | None:
        for symbol in self.symbols("binance"):
            if self._binance_id(symbol) == market_id:
                return symbol
        return None

    async def binance_time(self, request):
        return web.json_response({"serverTime": self.clock})

    async def binance_exchange_info(self, request):
        symbols = []
        for symbol, base, quote, source in self._market_rows("binance"):
            symbols.append({
                "symbol": self._binance_id(symbol), "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
                "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "permissions": ["SPOT"], "permissionSets": [["SPOT"]],
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000.00", "tickSize": tick_of(self._price_sample(source, symbol))},
                    {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000.00000", "stepSize": "0.00001"},
                    {"filterType": "NOTIONAL", "minNotional": "5.00", "maxNotional": "9000000.00"},
                ],
            })
        return web.json_response({"timezone": "UTC", "serverTime": self.clock, "rateLimits": [], "exchangeFilters": [], "symbols": symbols})

    async def binance_tickers(self, request):
        wanted = request.query.get("symbols")
        ids = set(json.loads(wanted)) if wanted else None
        rows = []
        for symbol, _, _, source in self._market_rows("binance"):
            market_id = self._binance_id(symbol)
            if ids is not None and market_id not in ids:
                continue
            quote = self.feed.quote(source, symbol)
            if quote is None:
                continue
            rows.append({
                "symbol": market_id, "priceChange": "0", "priceChangePercent": "0", "weightedAvgPrice": text(quote.mid),
                "prevClosePrice": text(quote.mid), "lastPrice": text(quote.mid), "lastQty": "0",
                "bidPrice": text(quote.bid), "bidQty": text(quote.bid_size), "askPrice": text(quote.ask), "askQty": text(quote.ask_size),
                "openPrice": text(quote.mid), "highPrice": text(quote.mid), "lowPrice": text(quote.mid), "volume": "0", "quoteVolume": "0",
                "openTime": quote.ts - 86_400_000, "closeTime": quote.ts, "firstId": 0, "lastId": 0, "count": 0,
            })
        return web.json_response(rows)

    async def binance_depth(self, request):
        symbol = self._binance_symbol(request.query.get("symbol", ""))
        if symbol is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        limit = int(request.query.get("limit", "100"))
        book = self.feed.book(self.shapes["binance"], symbol, depth=limit)
        bids = [[text(p), text(s)] for p, s in book.bids] if book else []
        asks = [[text(p), text(s)] for p, s in book.asks] if book else []
        return web.json_response({"lastUpdateId": book.ts if book else 0, "bids": bids, "asks": asks})

    async def binance_klines(self, request):
        symbol = self._binance_symbol(request.query.get("symbol", ""))
        interval = request.query.get("interval", "1m")
        if symbol is None:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        bars = self.feed.bars(self.shapes["binance"], symbol, interval, limit=int(request.query.get("limit", "500")))
        from scanners.feeds.base import TIMEFRAME_MS

        span = TIMEFRAME_MS[interval]
        return web.json_response([
            [b.ts, text(b.open), text(b.high), text(b.low), text(b.close), text(b.volume), b.ts + span - 1, "0", 0, "0", "0", "0"]
            for b in bars
        ])

    # kraken ----------------------------------------------------------------
    def _kraken_ids(self, base: str, quote: str) -> tuple[str, str]:
        """(pair id as AssetPairs keys it, altname)."""
        pair_id = KRAKEN_ASSETS.get(base, base) + KRAKEN_ASSETS.get(quote, quote)
        altname = KRAKEN_ALT.get(base, base) + KRAKEN_ALT.get(quote, quote)
        return pair_id, altname

    def _kraken_symbol(self, requested: str) -> tuple[str, str] | None:
        for symbol, base, quote, _ in self._market_rows("kraken"):
            pair_id, altname = self._kraken_ids(base, quote)
            if requested in (pair_id, altname):
                return symbol, pair_id
        return None

    async def kraken_time(self, request):
        return web.json_response({"error": [], "result": {"unixtime": self.clock // 1000, "rfc1123": ""}})

    async def kraken_assets(self, request):
        result = {}
        for _, base, quote, _ in self._market_rows("kraken"):
            for code in (base, quote):
                asset = KRAKEN_ASSETS.get(code, code)
                result[asset] = {"aclass": "currency", "altname": KRAKEN_ALT.get(code, code), "decimals": 10, "display_decimals": 5, "status": "enabled"}
        return web.json_response({"error": [], "result": result})

    async def kraken_asset_pairs(self, request):
        result = {}
        for symbol, base, quote, source in self._market_rows("kraken"):
            pair_id, altname = self._kraken_ids(base, quote)
            tick = tick_of(self._price_sample(source, symbol))
            result[pair_id] = {
                "altname": altname, "wsname": f"{KRAKEN_ALT.get(base, base)}/{quote}", "aclass_base": "currency",
                "base": KRAKEN_ASSETS.get(base, base), "aclass_quote": "currency", "quote": KRAKEN_ASSETS.get(quote, quote),
                "lot": "unit", "cost_decimals": 5, "pair_decimals": max(0, -Decimal(tick).as_tuple().exponent),
                "lot_decimals": 8, "lot_multiplier": 1, "leverage_buy": [], "leverage_sell": [],
                "fees": [[0, 0.26], [50000, 0.24]], "fees_maker": [[0, 0.16], [50000, 0.14]],
                "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40,
                "ordermin": "0.0001", "costmin": "0.5", "tick_size": tick, "status": "online",
            }
        return web.json_response({"error": [], "result": result})

    def _kraken_pairs(self, request) -> list[tuple[str, str]]:
        pairs = []
        for requested in request.query.get("pair", "").split(","):
            found = self._kraken_symbol(requested)
            if found:
                pairs.append(found)
        return pairs

    async def kraken_ticker(self, request):
        pairs = self._kraken_pairs(request)
        if not pairs:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        result = {}
        for symbol, pair_id in pairs:
            quote = self.feed.quote(self.shapes["kraken"], symbol)
            if quote is None:
                continue
            mid = text(quote.mid)
            result[pair_id] = {
                "a": [text(quote.ask), "1", text(quote.ask_size)], "b": [text(quote.bid), "1", text(quote.bid_size)],
                "c": [mid, "0"], "v": ["0", "0"], "p": [mid, mid], "t": [0, 0], "l": [mid, mid], "h": [mid, mid], "o": mid,
            }
        return web.json_response({"error": [], "result": result})

    async def kraken_depth(self, request):
        pairs = self._kraken_pairs(request)
        if not pairs:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        symbol, pair_id = pairs[0]
        count = int(request.query.get("count", "100"))
        book = self.feed.book(self.shapes["kraken"], symbol, depth=count)
        second = (book.ts // 1000) if book else 0
        side = lambda levels: [[text(p), text(s), second] for p, s in levels]  # noqa: E731
        return web.json_response({"error": [], "result": {pair_id: {"asks": side(book.asks) if book else [], "bids": side(book.bids) if book else []}}})

    async def kraken_ohlc(self, request):
        pairs = self._kraken_pairs(request)
        if not pairs:
            return web.json_response({"error": ["EQuery:Unknown asset pair"]})
        symbol, pair_id = pairs[0]
        minutes = int(request.query.get("interval", "1"))
        timeframe = {1: "1m", 5: "5m", 15: "15m", 60: "1h", 240: "4h", 1440: "1d"}[minutes]
        bars = self.feed.bars(self.shapes["kraken"], symbol, timeframe, limit=720)
        rows = [[b.ts // 1000, text(b.open), text(b.high), text(b.low), text(b.close), text(b.close), text(b.volume), 1] for b in bars]
        return web.json_response({"error": [], "result": {pair_id: rows, "last": rows[-1][0] if rows else 0}})
