"""Arbitrage: across venues (same symbol) and within one venue (triangles).

Cross-venue: for every symbol quoted on two or more venues, every ordered pair: buy on
A at A's ask, sell on B at B's bid.
    gross_pct = sell / buy − 1
    net_pct   = sell × (1 − fee_B) / (buy × (1 + fee_A)) − 1            (× 100)
With books on both venues the two books are walked together while the next level still
pays (bid × (1 − fee_B) > ask × (1 + fee_A)); that size maximises profit, and buy/sell
are the volume-weighted prices at it. With top of book only, the size is the smaller
quoted size, or `notional_cap_usd` worth where the venue gives no sizes.

Triangular: within one venue, every cycle of three markets in both directions. A leg
that sells the market's base converts at bid × (1 − fee); a leg that buys it converts
at (1 − fee) / ask. net_pct = product of the three rates − 1 (gross: without fees). The
market graph is indexed once (`TriangleIndex`); all cycles are evaluated at once with
numpy, and only the cycles that pass are recomputed in Decimal.

Data quality (counted in `ScanResult.skipped`, never used): quotes older than
`max_quote_age_ms` at scan time (`stale_quote`), order books older than it where the
route would walk them (`stale_book`: a stale book is refused, not silently replaced by
the top of book, since the fill would walk it), locked or crossed quotes
(`crossed_quote`), quotes missing a side (`missing_side`), venues that are down
(`venue_down`), and symbols of one base quoted in different currencies on different
venues (`quote_currency_mismatch`: BTC/USDC is not BTC/USD).

Risk score, 0 (safe) to 100, the weighted sum of four parts each in [0, 1]:
    30 × age    oldest quote's or book's age / max_quote_age_ms
    30 × depth  share of the visible depth the size uses (the limiting side)
    25 × volatility  stdev of the route's recent net_pct / 0.5 percentage points,
                 capped at 1 (0.5 until the route has 3 observations)
    15 × venue  0 when every venue is ok, 1 when one is degraded
Every opportunity records the age at scan time of the oldest quote (`quote_age_ms`) and of
the oldest book (`book_age_ms`, null when no book was walked) its figures rest on, never
negative. Opportunities are ranked by expected profit in USD (net_pct where it cannot be
converted); percentages are quantized to 6 decimal places, prices and sizes are kept at
full precision.

Expected profit is in the quote (or start) currency and in USD: USD-quoted is itself; a
currency with a market against USD in the same scan converts at its mid; the USD
stablecoins (USDT, USDC, BUSD, DAI, TUSD, USDP) count at par; anything else has no USD
figure (`expected_profit_usd` is null).

Transfer-aware (optional): with `rebalance` on and withdrawal fees given, each trade
pays `1 / rebalance_trades` of moving its inventory back: the base from the buy venue to
the sell venue and the quote the other way.
"""
from __future__ import annotations

import itertools
import statistics
from collections import Counter, defaultdict, deque
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal

import numpy as np

from trifecta_site.currency import UsdRates

from .candidates import ARBITRAGE, Candidate, ScanResult
from .feeds.base import DEGRADED, DOWN, Book, Feed, Quote

PCT = Decimal("0.000001")
UNIT = Decimal("0.00000001")  # sizes (rounded down) and profits are reported to 8 decimal places
ONE = Decimal(1)
HUNDRED = Decimal(100)
FIAT_LIKE = ("USD", "USDT", "USDC", "EUR", "GBP", "JPY", "BUSD", "BTC", "ETH")


@dataclass(frozen=True)
class ArbitrageThresholds:
    min_net_pct: Decimal = Decimal("0.5")
    max_risk_score: Decimal = Decimal("75")
    top_n: int = 3
    max_quote_age_ms: int = 5000
    notional_cap_usd: Decimal = Decimal("10000")
    rebalance_trades: int = 10
    auto_min_net_pct: Decimal = Decimal("0.5")
    auto_min_profit_usd: Decimal = Decimal("50")
    auto_max_risk: Decimal = Decimal("30")


@dataclass
class RouteHistory:
    """Recent net_pct per route, kept across scans for the volatility part of the risk score."""

    size: int = 50
    routes: dict = field(default_factory=dict)

    def record(self, route: str, net_pct: Decimal) -> None:
        self.routes.setdefault(route, deque(maxlen=self.size)).append(float(net_pct))

    def volatility(self, route: str) -> float:
        seen = self.routes.get(route)
        if not seen or len(seen) < 3:
            return 0.5
        return min(1.0, statistics.pstdev(seen) / 0.5)


def pct(value: Decimal) -> Decimal:
    return (value * HUNDRED).quantize(PCT)


def risk_score(*, age_ms: int, max_age_ms: int, depth_used: Decimal, volatility: float, degraded: bool) -> Decimal:
    parts = (
        30 * min(1.0, max(0.0, age_ms / max_age_ms)),
        30 * min(1.0, max(0.0, float(depth_used))),
        25 * volatility,
        15 * (1.0 if degraded else 0.0),
    )
    return Decimal(str(round(sum(parts), 2)))


def age_ms(now: int, ts: int) -> int:
    """Milliseconds since `ts`, never negative (a venue clock slightly ahead of ours is not the future)."""
    return max(0, now - ts)


def stale_books(books, *, now: int, thresholds: ArbitrageThresholds) -> bool:
    """True when any book is older than the max quote age: the route must not be walked on it."""
    return any(now - book.ts > thresholds.max_quote_age_ms for book in books)


def usable_quotes(feed: Feed, *, now: int, thresholds: ArbitrageThresholds, venue_status: dict, skipped: Counter):
    """The latest quote of every instrument that passes the data-quality checks."""
    result = []
    for instrument in feed.instruments():
        if venue_status.get(instrument.venue) == DOWN:
            skipped["venue_down"] += 1
            continue
        quote = feed.quote(instrument.venue, instrument.symbol)
        if quote is None:
            continue
        if quote.bid is None or quote.ask is None or quote.bid <= 0 or quote.ask <= 0:
            skipped["missing_side"] += 1
        elif now - quote.ts > thresholds.max_quote_age_ms:
            skipped["stale_quote"] += 1
        elif quote.crossed:
            skipped["crossed_quote"] += 1
        else:
            result.append(quote)
    return result


def walk_books(buy_book: Book, sell_book: Book, buy_fee: Decimal, sell_fee: Decimal, cap: Decimal | None):
    """Size that maximises profit walking both books, with the VWAPs and levels used."""
    asks, bids = list(buy_book.asks), list(sell_book.bids)
    i = j = 0
    ask_left = asks[0][1] if asks else Decimal(0)
    bid_left = bids[0][1] if bids else Decimal(0)
    size = cost = proceeds = Decimal(0)
    asks_used = bids_used = 0
    while i < len(asks) and j < len(bids):
        ask_price, bid_price = asks[i][0], bids[j][0]
        if bid_price * (ONE - sell_fee) <= ask_price * (ONE + buy_fee):
            break
        take = min(ask_left, bid_left)
        if cap is not None:
            take = min(take, cap - size)
        if take <= 0:
            break
        size += take
        asks_used, bids_used = i + 1, j + 1
        cost += take * ask_price
        proceeds += take * bid_price
        ask_left -= take
        bid_left -= take
        if ask_left == 0:
            i += 1
            ask_left = asks[i][1] if i < len(asks) else Decimal(0)
        if bid_left == 0:
            j += 1
            bid_left = bids[j][1] if j < len(bids) else Decimal(0)
        if cap is not None and size >= cap:
            break
    if size == 0:
        return None
    visible = min(sum(s for _, s in asks), sum(s for _, s in bids))
    return {
        "size": size,
        "buy_price": cost / size,
        "sell_price": proceeds / size,
        "levels": (asks_used, bids_used),
        "depth_used": size / visible if visible else ONE,
    }


def walk_triangle(books: list[Book], sells: list[bool], fee: Decimal, cap: Decimal | None = None):
    """Walk three books together: the start amount that maximises the cycle's profit.

    Start currency flows through the legs; at each step the marginal rate is the product
    of each leg's current level (after fees). The step is as large as the first level to
    run out allows; the walk stops when the marginal cycle no longer pays (rate <= 1).
    Returns the size in start currency, what comes back, and each leg's average price.
    """
    levels = [list(book.bids if sell else book.asks) for book, sell in zip(books, sells)]
    position = [0, 0, 0]
    left = [lv[0][1] if lv else Decimal(0) for lv in levels]
    keep = ONE - fee
    size = returned = Decimal(0)
    base_traded, quote_traded = [Decimal(0)] * 3, [Decimal(0)] * 3
    touched = [0, 0, 0]
    while all(position[k] < len(levels[k]) for k in range(3)):
        prices = [levels[k][position[k]][0] for k in range(3)]
        rates = [prices[k] * keep if sells[k] else keep / prices[k] for k in range(3)]
        if rates[0] * rates[1] * rates[2] <= ONE:
            break
        # the most start currency each leg's current level can take
        room, carried = [], ONE
        for k in range(3):
            leg_input = left[k] if sells[k] else left[k] * prices[k]
            room.append(leg_input / carried)
            carried *= rates[k]
        step = min(room)
        capped = cap is not None and cap - size < step
        if capped:
            step = cap - size
        if step <= 0:
            break
        amount = step
        for k in range(3):
            base = amount if sells[k] else amount / prices[k]  # what this leg takes from the book
            base_traded[k] += base
            quote_traded[k] += base * prices[k]
            touched[k] = position[k] + 1
            left[k] -= base
            # the leg that limited the step has used its level up (whatever rounding leaves over)
            if left[k] <= 0 or (room[k] == step and not capped):
                position[k] += 1
                left[k] = levels[k][position[k]][1] if position[k] < len(levels[k]) else Decimal(0)
            amount *= rates[k]
        size += step
        returned += amount
        if cap is not None and size >= cap:
            break
    if size == 0:
        return None
    return {
        "size": size,
        "returned": returned,
        "prices": [quote_traded[k] / base_traded[k] for k in range(3)],
        "levels": touched,
        "depth_used": max(base_traded[k] / sum(size for _, size in levels[k]) for k in range(3)),
    }


def _rebalance_cost(buy_venue, sell_venue, base, quote_ccy, size, sell_price, fees, trades) -> Decimal:
    base_fee = fees.get((buy_venue, base), Decimal(0))
    quote_fee = fees.get((sell_venue, quote_ccy), Decimal(0))
    return (base_fee * sell_price + quote_fee) / max(1, trades)


def cross_venue_net(bids: np.ndarray, asks: np.ndarray, fees: np.ndarray) -> np.ndarray:
    """Net return of buying on venue i and selling on venue j, per symbol: shape (symbols, i, j).

    `bids`/`asks` are (symbols, venues) with NaN where a venue does not quote a symbol;
    `fees` is (venues,). The diagonal (same venue) and missing quotes are NaN.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        net = (bids[:, None, :] * (1 - fees)[None, None, :]) / (asks[:, :, None] * (1 + fees)[None, :, None]) - 1
    net[:, np.arange(bids.shape[1]), np.arange(bids.shape[1])] = np.nan
    return net


def scan_cross_venue(quotes: list[Quote], feed: Feed, *, now, thresholds, history, venue_status, rates,
                     withdrawal_fees, rebalance, use_depth, result: ScanResult) -> list[Candidate]:
    by_symbol: dict[str, dict[str, Quote]] = defaultdict(dict)
    for quote in quotes:
        by_symbol[quote.symbol][quote.venue] = quote
    symbols_by_base: dict[str, set] = defaultdict(set)
    for symbol in by_symbol:
        symbols_by_base[symbol.split("/")[0]].add(symbol)
    paired = []
    for symbol, venues in by_symbol.items():
        if len(venues) >= 2:
            paired.append(symbol)
        elif len(symbols_by_base[symbol.split("/")[0]]) > 1:
            result.skipped["quote_currency_mismatch"] += 1
    if not paired:
        return []
    venue_names = sorted({v for s in paired for v in by_symbol[s]})
    column = {v: i for i, v in enumerate(venue_names)}
    bids = np.full((len(paired), len(venue_names)), np.nan)
    asks = np.full_like(bids, np.nan)
    for row, symbol in enumerate(paired):
        for venue, quote in by_symbol[symbol].items():
            bids[row, column[venue]], asks[row, column[venue]] = float(quote.bid), float(quote.ask)
    fees = {v: feed.taker_fee(v) for v in venue_names}
    net = cross_venue_net(bids, asks, np.array([float(fees[v]) for v in venue_names]))
    result.evaluated += int(np.count_nonzero(~np.isnan(net)))
    candidates = []
    with np.errstate(invalid="ignore"):
        hits = np.argwhere(net >= float(thresholds.min_net_pct / HUNDRED) - 1e-9)
    for row, a, b in hits:
        symbol = paired[row]
        candidate = _cross_candidate(
            by_symbol[symbol][venue_names[a]], by_symbol[symbol][venue_names[b]], feed, now=now, thresholds=thresholds,
            history=history, fees=fees, venue_status=venue_status, rates=rates, withdrawal_fees=withdrawal_fees,
            rebalance=rebalance, use_depth=use_depth,
        )
        if isinstance(candidate, str):
            result.skipped[candidate] += 1
        elif candidate is not None:
            candidates.append(candidate)
    return candidates


def _cross_candidate(buy: Quote, sell: Quote, feed, *, now, thresholds, history, fees, venue_status, rates,
                     withdrawal_fees, rebalance, use_depth) -> Candidate | str | None:
    """The candidate, None when it misses a threshold, or the reason it was skipped (`stale_book`)."""
    buy_fee, sell_fee = fees[buy.venue], fees[sell.venue]
    base, _, rest = buy.symbol.partition("/")
    quote_ccy = rest.split(":")[0]
    walked = None
    books = ()
    if use_depth:
        buy_book, sell_book = feed.book(buy.venue, buy.symbol), feed.book(sell.venue, sell.symbol)
        if buy_book and sell_book and buy_book.asks and sell_book.bids:
            books = (buy_book, sell_book)
            if stale_books(books, now=now, thresholds=thresholds):
                return "stale_book"
            walked = walk_books(buy_book, sell_book, buy_fee, sell_fee, None)
            if walked is None:
                return None
    if walked is not None:
        size, buy_price, sell_price = walked["size"], walked["buy_price"], walked["sell_price"]
        depth_used, levels = walked["depth_used"], walked["levels"]
    else:
        buy_price, sell_price = buy.ask, sell.bid
        sizes = [s for s in (buy.ask_size, sell.bid_size) if s is not None and s > 0]
        if sizes:
            size, depth_used = min(sizes), ONE
        else:
            cap = rates.to_usd(ONE, quote_ccy)
            if not cap:
                return None
            size, depth_used = thresholds.notional_cap_usd / cap / buy_price, Decimal(0)
        levels = None
    size = size.quantize(UNIT, rounding=ROUND_DOWN)
    if size <= 0:
        return None
    spend = size * buy_price * (ONE + buy_fee)
    profit = size * sell_price * (ONE - sell_fee) - spend
    if rebalance and withdrawal_fees:
        profit -= _rebalance_cost(buy.venue, sell.venue, base, quote_ccy, size, sell_price, withdrawal_fees, thresholds.rebalance_trades)
    net = profit / spend
    gross = sell_price / buy_price - ONE
    route = f"xv:{buy.symbol}:{buy.venue}>{sell.venue}"
    history.record(route, pct(net))
    if pct(net) < thresholds.min_net_pct:
        return None
    oldest_quote = min(buy.ts, sell.ts)
    oldest = min([oldest_quote, *(book.ts for book in books)])
    score = risk_score(
        age_ms=age_ms(now, oldest), max_age_ms=thresholds.max_quote_age_ms, depth_used=depth_used,
        volatility=history.volatility(route),
        degraded=DEGRADED in (venue_status.get(buy.venue), venue_status.get(sell.venue)),
    )
    if score > thresholds.max_risk_score:
        return None
    profit_usd = rates.to_usd(profit, quote_ccy)
    figures = {
        "type": "cross_venue", "symbol": buy.symbol, "buy_venue": buy.venue, "sell_venue": sell.venue,
        "buy_price": buy_price, "sell_price": sell_price, "gross_pct": pct(gross), "net_pct": pct(net),
        "size": size, "expected_profit": profit.quantize(UNIT),
        "expected_profit_usd": None if profit_usd is None else profit_usd.quantize(UNIT), "quote_currency": quote_ccy,
        "buy_fee": buy_fee, "sell_fee": sell_fee, **_ages(now, [buy, sell], books),
    }
    if levels is not None:
        figures["depth_levels_used"] = list(levels)
    return Candidate(ARBITRAGE, now, oldest, score, profit_usd if profit_usd is not None else pct(net), figures)


def _ages(now: int, quotes, books) -> dict:
    """`quote_age_ms` and `book_age_ms` (None without books) of the oldest price used, at scan time."""
    return {"quote_age_ms": age_ms(now, min(q.ts for q in quotes)),
            "book_age_ms": age_ms(now, min(b.ts for b in books)) if books else None}


@dataclass
class TriangleIndex:
    """Every 3-market cycle of one venue, both directions, as index arrays for numpy.

    Built once from the venue's market list; `cycles_touching(market)` lists the cycles a
    market's update can change, for incremental re-evaluation.
    """

    symbols: list[str]
    legs: np.ndarray  # (cycles, 3) market index per leg
    sells: np.ndarray  # (cycles, 3) True where the leg sells the market's base
    starts: list[str]  # start currency per cycle
    touching: dict[int, tuple[np.ndarray, np.ndarray]]  # market -> (cycles, their legs' table indexes)
    flat: np.ndarray  # per leg, its index in the table [buy rates | sell rates] of every market

    @classmethod
    def build(cls, symbols: list[str]) -> TriangleIndex:
        symbols = sorted(set(symbols))
        edges: dict[frozenset, list[int]] = defaultdict(list)
        neighbours: dict[str, set] = defaultdict(set)
        quote_count = Counter()
        for index, symbol in enumerate(symbols):
            base, _, rest = symbol.partition("/")
            quote = rest.split(":")[0]
            if ":" in rest or base == quote:
                continue
            edges[frozenset((base, quote))].append(index)
            neighbours[base].add(quote)
            neighbours[quote].add(base)
            quote_count[quote] += 1
        legs, sells, starts = [], [], []
        for a in sorted(neighbours):
            for b, c in itertools.combinations(sorted(n for n in neighbours[a] if n > a), 2):
                if c not in neighbours[b]:
                    continue
                trio = sorted((a, b, c), key=lambda x: (-quote_count[x], FIAT_LIKE.index(x) if x in FIAT_LIKE else 99, x))
                start, x, y = trio
                for path in ((start, x, y, start), (start, y, x, start)):
                    for markets in itertools.product(*(edges[frozenset(pair)] for pair in zip(path, path[1:]))):
                        legs.append(markets)
                        sells.append([symbols[m].split("/")[0] == src for m, src in zip(markets, path)])
                        starts.append(start)
        legs_array = np.array(legs, dtype=np.int64).reshape(-1, 3)
        sells_array = np.array(sells, dtype=bool).reshape(-1, 3)
        touching = defaultdict(list)
        for cycle, markets in enumerate(legs):
            for market in set(markets):
                touching[market].append(cycle)
        flat = legs_array + sells_array * len(symbols)
        touching_arrays = {}
        for market, cycles in touching.items():
            cycles = np.array(cycles, dtype=np.int64)
            touching_arrays[market] = (cycles, flat[cycles])
        return cls(symbols, legs_array, sells_array, starts, touching_arrays, flat)

    def __len__(self) -> int:
        return len(self.legs)

    def cycles_touching(self, market: int) -> np.ndarray:
        return self.touching[market][0] if market in self.touching else np.empty(0, dtype=np.int64)

    def reevaluate(self, bids, asks, fees, market: int) -> tuple[np.ndarray, np.ndarray]:
        """(cycles, net return) of only the cycles a book update of `market` can change."""
        if market not in self.touching:
            return np.empty(0, dtype=np.int64), np.empty(0)
        cycles, flat = self.touching[market]
        return cycles, self._table(bids, asks, fees)[flat].prod(axis=1) - 1

    @staticmethod
    def _table(bids, asks, fees) -> np.ndarray:
        keep = 1 - fees
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.concatenate((keep / asks, bids * keep))

    def evaluate(self, bids, asks, fees, cycles: np.ndarray | None = None) -> np.ndarray:
        """Net return (fraction) of each cycle, or of the `cycles` given; NaN where a quote is missing.

        Each market's buy and sell rate is computed once, then gathered into the cycles
        in one step.
        """
        flat = self.flat if cycles is None else self.flat[cycles]
        return self._table(bids, asks, fees)[flat].prod(axis=1) - 1


_index_cache: dict[tuple, TriangleIndex] = {}


def triangle_index(venue: str, symbols: list[str]) -> TriangleIndex:
    key = (venue, tuple(sorted(symbols)))
    if key not in _index_cache:
        if len(_index_cache) > 32:
            _index_cache.clear()
        _index_cache[key] = TriangleIndex.build(list(symbols))
    return _index_cache[key]


def scan_triangles(quotes: list[Quote], feed: Feed, *, now, thresholds, history, venue_status, rates,
                   result: ScanResult, use_depth: bool = True) -> list[Candidate]:
    by_venue: dict[str, dict[str, Quote]] = defaultdict(dict)
    for quote in quotes:
        by_venue[quote.venue][quote.symbol] = quote
    candidates = []
    min_net = float(thresholds.min_net_pct / HUNDRED)
    for venue, venue_quotes in by_venue.items():
        all_symbols = [i.symbol for i in feed.instruments() if i.venue == venue]
        index = triangle_index(venue, all_symbols)
        if not len(index):
            continue
        bids = np.full(len(index.symbols), np.nan)
        asks = np.full(len(index.symbols), np.nan)
        for position, symbol in enumerate(index.symbols):
            quote = venue_quotes.get(symbol)
            if quote is not None:
                bids[position], asks[position] = float(quote.bid), float(quote.ask)
        fee = feed.taker_fee(venue)
        fees = np.full(len(index.symbols), float(fee))
        net = index.evaluate(bids, asks, fees)
        result.evaluated += int(np.count_nonzero(~np.isnan(net)))
        for cycle in np.nonzero(net >= min_net - 1e-9)[0]:
            candidate = _triangle_candidate(index, int(cycle), venue_quotes, venue, fee, now=now, thresholds=thresholds,
                                            history=history, venue_status=venue_status, rates=rates, feed=feed,
                                            use_depth=use_depth)
            if isinstance(candidate, str):
                result.skipped[candidate] += 1
            elif candidate is not None:
                candidates.append(candidate)
    return candidates


def _triangle_candidate(index: TriangleIndex, cycle: int, quotes: dict, venue: str, fee: Decimal, *, now,
                        thresholds, history, venue_status, rates, feed=None, use_depth=False) -> Candidate | str | None:
    """The candidate, None when it misses a threshold, or the reason it was skipped (`stale_book`)."""
    start = index.starts[cycle]
    amount_rate, gross_rate = ONE, ONE
    capacity = None  # in start currency
    path, used = [], []
    for market, sells in zip(index.legs[cycle], index.sells[cycle]):
        quote = quotes[index.symbols[market]]
        used.append(quote)
        if sells:
            rate, gross = quote.bid * (ONE - fee), quote.bid
            limit = quote.bid_size  # base units in
        else:
            rate, gross = (ONE - fee) / quote.ask, ONE / quote.ask
            limit = quote.ask_size * quote.ask if quote.ask_size is not None else None  # quote units in
        if limit is not None:
            in_start = limit / amount_rate
            capacity = in_start if capacity is None else min(capacity, in_start)
        path.append({"symbol": quote.symbol, "side": "sell" if sells else "buy", "price": quote.bid if sells else quote.ask})
        amount_rate *= rate
        gross_rate *= gross
    net = amount_rate - ONE
    route = f"tri:{venue}:" + ">".join(f"{leg['side']}:{leg['symbol']}" for leg in path)
    history.record(route, pct(net))
    if pct(net) < thresholds.min_net_pct:
        return None
    walked = None
    books = []
    if use_depth and feed is not None:
        books = [feed.book(venue, leg["symbol"]) for leg in path]
        if not all(books):
            books = []
        elif stale_books(books, now=now, thresholds=thresholds):
            return "stale_book"
        if books:
            walked = walk_triangle(books, [leg["side"] == "sell" for leg in path], fee)
            if walked is None:
                return None
    if walked is not None:
        size, depth_used = walked["size"], walked["depth_used"]
        net = walked["returned"] / walked["size"] - ONE
        for leg, price, count in zip(path, walked["prices"], walked["levels"]):
            leg["price"], leg["levels_used"] = price, count
    elif capacity is None:
        per_usd = rates.to_usd(ONE, start)
        if not per_usd:
            return None
        size, depth_used = thresholds.notional_cap_usd / per_usd, Decimal(0)
    else:
        size, depth_used = capacity, ONE
    if pct(net) < thresholds.min_net_pct:
        return None
    size = size.quantize(UNIT, rounding=ROUND_DOWN)
    profit = size * net
    oldest = min([*(q.ts for q in used), *(book.ts for book in books)])
    score = risk_score(
        age_ms=age_ms(now, oldest), max_age_ms=thresholds.max_quote_age_ms, depth_used=depth_used,
        volatility=history.volatility(route), degraded=venue_status.get(venue) == DEGRADED,
    )
    if score > thresholds.max_risk_score:
        return None
    profit_usd = rates.to_usd(profit, start)
    figures = {
        "type": "triangular", "venue": venue, "path": path, "start_currency": start,
        "gross_pct": pct(gross_rate - ONE), "net_pct": pct(net), "size": size,
        "expected_profit": profit.quantize(UNIT),
        "expected_profit_usd": None if profit_usd is None else profit_usd.quantize(UNIT), "fee": fee,
        **_ages(now, used, books),
    }
    return Candidate(ARBITRAGE, now, oldest, score, profit_usd if profit_usd is not None else pct(net), figures)


def scan_arbitrage(feed: Feed, *, now: int, thresholds: ArbitrageThresholds, history: RouteHistory | None = None,
                   venue_status: dict | None = None, withdrawal_fees: dict | None = None, rebalance: bool = False,
                   use_depth: bool = True) -> ScanResult:
    """Every cross-venue and triangular opportunity at or above the thresholds, best first."""
    history = history if history is not None else RouteHistory()
    venue_status = venue_status or {}
    result = ScanResult(kind=ARBITRAGE, ts=now)
    quotes = usable_quotes(feed, now=now, thresholds=thresholds, venue_status=venue_status, skipped=result.skipped)
    result.instruments_seen = len(feed.instruments())
    rates = UsdRates(quotes)
    candidates = scan_cross_venue(
        quotes, feed, now=now, thresholds=thresholds, history=history, venue_status=venue_status, rates=rates,
        withdrawal_fees=withdrawal_fees or {}, rebalance=rebalance, use_depth=use_depth, result=result,
    )
    candidates += scan_triangles(quotes, feed, now=now, thresholds=thresholds, history=history,
                                 venue_status=venue_status, rates=rates, result=result, use_depth=use_depth)
    candidates.sort(key=lambda c: (c.figures["expected_profit_usd"] is not None, c.rank, c.figures["net_pct"]), reverse=True)
    result.candidates = candidates
    return result
