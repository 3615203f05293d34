"""Scanner speed against the baselines public bots use, measured in the same run.

Market (seeded): a Binance-shaped exchange of 2,000 markets over ~600 currencies (about
1,500 triangles), and a cross-venue grid of 500 symbols × 8 venues with 20-level books.

Triangular
- kernel: `TriangleIndex.evaluate` over every cycle, vs (a) a plain Python loop over the
  same precomputed cycles.
- end to end: from the feed snapshot (bid/ask arrays) to ranked opportunities recomputed
  in Decimal, vs (b) a per-scan path search from every quote currency (build the graph
  and walk it each scan, as most public triangular bots do).
- p99 of the end-to-end scan; incremental: re-evaluating only the cycles one book update
  touches.

Cross-venue
- kernel plus ranking and the depth walk (VWAP over 20 levels) of the routes that pass,
  vs (a) a plain Python loop over every (symbol, buy venue, sell venue) with the same walk.

Every figure is a ratio against its baseline measured here; results go to
bench/results/scan.json.
"""
import random
import statistics
import time
from collections import defaultdict
from decimal import Decimal

import numpy as np
from common import metric, write_results

from scanners.arbitrage import TriangleIndex, cross_venue_net, walk_books, walk_triangle
from scanners.feeds.base import Book

SEED = 20261124
FEE = 0.001


def binance_like_exchange(rng: random.Random, markets: int = 2000):
    quotes = ["USDT", "BTC", "ETH", "BNB", "FDUSD", "EUR", "TRY", "USDC"]
    weights = [0.42, 0.22, 0.08, 0.08, 0.06, 0.05, 0.05, 0.04]
    bases = [f"C{i:03d}" for i in range(600)]
    usd = {q: v for q, v in zip(quotes, [1, 60000, 3000, 600, 1, 1.08, 0.03, 1])}
    for base in bases:
        usd[base] = 10 ** rng.uniform(-3, 3)
    symbols = set()
    for a, b in (("BTC", "USDT"), ("ETH", "USDT"), ("ETH", "BTC"), ("BNB", "USDT"), ("BNB", "BTC"), ("BTC", "EUR"), ("USDT", "TRY")):
        symbols.add(f"{a}/{b}")
    while len(symbols) < markets:
        symbols.add(f"{rng.choice(bases)}/{rng.choices(quotes, weights)[0]}")
    symbols = sorted(symbols)
    mids = np.array([usd[s.split("/")[0]] / usd[s.split("/")[1]] for s in symbols])
    noise = np.array([1 + rng.gauss(0, 0.002) for _ in symbols])
    spread = np.array([rng.uniform(0.0002, 0.002) for _ in symbols])
    bids = mids * noise * (1 - spread / 2)
    asks = mids * noise * (1 + spread / 2)
    return symbols, bids, asks


def python_loop_triangles(index, bids, asks):
    """Baseline (a): the same cycles, evaluated one by one in Python."""
    out = []
    for legs, sells in zip(index.legs.tolist(), index.sells.tolist()):
        rate = 1.0
        for market, sell in zip(legs, sells):
            rate *= bids[market] * (1 - FEE) if sell else (1 - FEE) / asks[market]
        out.append(rate - 1)
    return out


def path_search_triangles(symbols, bids, asks):
    """Baseline (b): build the graph and search every 3-cycle from each quote currency, every scan."""
    graph = defaultdict(list)
    for i, symbol in enumerate(symbols):
        base, quote = symbol.split("/")
        graph[quote].append((base, (1 - FEE) / asks[i], i))  # buy base with quote
        graph[base].append((quote, bids[i] * (1 - FEE), i))  # sell base for quote
    found = []
    for start in {s.split("/")[1] for s in symbols}:
        for mid, r1, m1 in graph[start]:
            for end, r2, m2 in graph[mid]:
                if end == start or m2 == m1:
                    continue
                for back, r3, m3 in graph[end]:
                    if back == start and m3 not in (m1, m2):
                        found.append((r1 * r2 * r3 - 1, (m1, m2, m3)))
    found.sort(reverse=True)
    return found


def ranked_triangles(index, symbols, bids, asks, fees, threshold):
    """End to end: kernel, threshold, rank, and the survivors' figures recomputed in Decimal."""
    net = index.evaluate(bids, asks, fees)
    hits = np.nonzero(net >= threshold)[0]
    order = hits[np.argsort(-net[hits])]
    ranked = []
    fee = Decimal(str(FEE))
    for cycle in order[:50]:
        rate = Decimal(1)
        for market, sell in zip(index.legs[cycle], index.sells[cycle]):
            bid, ask = Decimal(repr(float(bids[market]))), Decimal(repr(float(asks[market])))
            rate *= bid * (1 - fee) if sell else (1 - fee) / ask
        ranked.append((rate - 1, int(cycle)))
    return ranked


def exchange_books(rng, symbols, bids, asks, levels=20):
    books = []
    for i, symbol in enumerate(symbols):
        tick = float(asks[i] - bids[i]) / 4
        books.append(Book(
            "binance", symbol, 0,
            tuple((Decimal(repr(float(bids[i] - k * tick))), Decimal(repr(round(rng.uniform(0.5, 50), 3)))) for k in range(levels)),
            tuple((Decimal(repr(float(asks[i] + k * tick))), Decimal(repr(round(rng.uniform(0.5, 50), 3)))) for k in range(levels)),
        ))
    return books


def ranked_triangles_with_depth(index, bids, asks, fees, threshold, books, limit=None):
    """End to end with depth: kernel, threshold, rank, and a 20-level walk of every survivor in Decimal."""
    net = index.evaluate(bids, asks, fees)
    hits = np.nonzero(net >= threshold)[0]
    fee = Decimal(str(FEE))
    walked = []
    for cycle in hits[np.argsort(-net[hits])][:limit]:
        legs = index.legs[cycle].tolist()
        result = walk_triangle([books[m] for m in legs], index.sells[cycle].tolist(), fee)
        if result:
            walked.append((result["returned"] / result["size"], int(cycle)))
    walked.sort(reverse=True)
    return walked


def percentile(samples, q):
    return float(np.percentile(np.array(samples), q))


def timings(function, runs):
    samples = []
    for _ in range(runs):
        began = time.perf_counter()
        function()
        samples.append(time.perf_counter() - began)
    return samples


def cross_grid(rng: random.Random, symbols=500, venues=8, levels=20):
    mids = np.array([10 ** rng.uniform(-2, 4) for _ in range(symbols)])
    offsets = np.array([[1 + rng.gauss(0, 0.002) for _ in range(venues)] for _ in range(symbols)])
    half = np.array([[rng.uniform(0.0001, 0.001) for _ in range(venues)] for _ in range(symbols)])
    bids = mids[:, None] * offsets * (1 - half)
    asks = mids[:, None] * offsets * (1 + half)
    fees = np.array([rng.choice([0.001, 0.0026, 0.002, 0.0005]) for _ in range(venues)])
    tick = mids / 10000

    def book(s, v):
        return Book(
            f"v{v}", f"S{s}/USD", 0,
            tuple((Decimal(repr(float(bids[s, v] - k * tick[s]))), Decimal(repr(round(rng.uniform(0.1, 3), 4)))) for k in range(levels)),
            tuple((Decimal(repr(float(asks[s, v] + k * tick[s]))), Decimal(repr(round(rng.uniform(0.1, 3), 4)))) for k in range(levels)),
        )

    books = {(s, v): book(s, v) for s in range(symbols) for v in range(venues)}
    return bids, asks, fees, books


def cross_scan(bids, asks, fees, books, threshold):
    net = cross_venue_net(bids, asks, fees)
    with np.errstate(invalid="ignore"):
        hits = np.argwhere(net >= threshold)
    fee_d = [Decimal(repr(float(f))) for f in fees]
    walked = []
    for s, a, b in hits:
        result = walk_books(books[(s, a)], books[(s, b)], fee_d[a], fee_d[b], None)
        if result:
            walked.append((result["sell_price"] / result["buy_price"], s, a, b))
    walked.sort(reverse=True)
    return walked


def cross_loop(bids, asks, fees, books, threshold):
    """Baseline (a): every (symbol, buy venue, sell venue) in a Python loop, same walk for the passing ones."""
    symbols, venues = bids.shape
    fee_d = [Decimal(repr(float(f))) for f in fees]
    walked = []
    for s in range(symbols):
        for a in range(venues):
            for b in range(venues):
                if a == b:
                    continue
                net = bids[s, b] * (1 - fees[b]) / (asks[s, a] * (1 + fees[a])) - 1
                if net >= threshold:
                    result = walk_books(books[(s, a)], books[(s, b)], fee_d[a], fee_d[b], None)
                    if result:
                        walked.append((result["sell_price"] / result["buy_price"], s, a, b))
    walked.sort(reverse=True)
    return walked


def market_feed(symbols, bids, asks):
    """The same exchange held by an in-memory feed, for the product's own `scan_arbitrage`."""
    from tests.scanners.market import MemoryMarket

    market = MemoryMarket(now=1_000_000, fees={"binance": str(FEE)})
    for symbol, bid, ask in zip(symbols, bids.tolist(), asks.tolist()):
        market.set_quote("binance", symbol, repr(bid), repr(ask), "1", "1")
    return market


def main():
    rng = random.Random(SEED)
    symbols, bids, asks = binance_like_exchange(rng)
    began = time.perf_counter()
    index = TriangleIndex.build(symbols)
    build_ms = (time.perf_counter() - began) * 1000
    fees = np.full(len(symbols), FEE)
    threshold = 0.005  # the product's default minimum net profit, 0.5 %
    print(f"exchange: {len(symbols)} markets, {len(index)} directed triangles ({len(index) // 2} triangles), index built once in {build_ms:.0f} ms")

    kernel = statistics.median(timings(lambda: index.evaluate(bids, asks, fees), 200))
    loop = statistics.median(timings(lambda: python_loop_triangles(index, bids.tolist(), asks.tolist()), 10))
    end_to_end = timings(lambda: ranked_triangles(index, symbols, bids, asks, fees, threshold), 300)
    search = statistics.median(timings(lambda: path_search_triangles(symbols, bids.tolist(), asks.tolist()), 5))
    busiest = int(np.argmax([len(index.cycles_touching(m)) for m in range(len(symbols))]))
    incremental = timings(lambda: index.reevaluate(bids, asks, fees, busiest), 2000)
    books = exchange_books(random.Random(SEED + 2), symbols, bids, asks)
    with_depth = timings(lambda: ranked_triangles_with_depth(index, bids, asks, fees, threshold, books), 200)
    survivors = int(np.count_nonzero(index.evaluate(bids, asks, fees) >= threshold))
    hundred = timings(lambda: ranked_triangles_with_depth(index, bids, asks, fees, -1.0, books, limit=100), 20)
    print(f"{survivors} directed cycles at or above 0.5 % walked through 20-level books per scan")
    print(f"one book update of {symbols[busiest]} touches {len(index.cycles_touching(busiest))} cycles")
    same_cycles = {frozenset(m) for _, m in path_search_triangles(symbols, bids.tolist(), asks.tolist())}
    assert same_cycles == {frozenset(legs) for legs in index.legs.tolist()}, "baseline (b) must find the same triangles"

    cross_rng = random.Random(SEED + 1)
    c_bids, c_asks, c_fees, books = cross_grid(cross_rng)
    cross_threshold = 0.005
    vector = timings(lambda: cross_scan(c_bids, c_asks, c_fees, books, cross_threshold), 200)
    python = statistics.median(timings(lambda: cross_loop(c_bids, c_asks, c_fees, books, cross_threshold), 5))
    routes = len(cross_scan(c_bids, c_asks, c_fees, books, cross_threshold))
    print(f"cross-venue grid: 500 symbols × 8 venues, 20-level books, {routes} routes at or above 0.5 % walked per scan")

    from scanners.arbitrage import ArbitrageThresholds, RouteHistory, scan_arbitrage

    market = market_feed(symbols, bids, asks)
    through_feed = timings(
        lambda: scan_arbitrage(market, now=1_000_000, thresholds=ArbitrageThresholds(), history=RouteHistory()), 10
    )

    ms = 1000
    results = {
        "triangular_kernel": metric(kernel * ms, "ms", loop * ms, ">= 20x baseline (a) python loop", loop / kernel >= 20),
        "triangular_end_to_end_median": metric(statistics.median(end_to_end) * ms, "ms", search * ms,
                                               ">= 100x baseline (b) per-scan path search", search / statistics.median(end_to_end) >= 100),
        "triangular_end_to_end_p99": metric(percentile(end_to_end, 99) * ms, "ms", search * ms, "<= 5 ms", percentile(end_to_end, 99) * ms <= 5),
        "triangular_end_to_end_depth_p99": metric(percentile(with_depth, 99) * ms, "ms", search * ms,
                                                  "<= 25 ms walking 20-level depth", percentile(with_depth, 99) * ms <= 25),
        "triangular_depth_walk_100_cycles_p99": metric(
            percentile(hundred, 99) * ms, "ms", search * ms,
            "none (stress: the best 100 cycles walked through 20 levels whatever their net)", True),
        "triangular_incremental_p99": metric(percentile(incremental, 99) * ms, "ms", statistics.median(end_to_end) * ms,
                                             "<= 0.1 ms for one book update", percentile(incremental, 99) * ms <= 0.1),
        "cross_venue_median": metric(statistics.median(vector) * ms, "ms", python * ms, ">= 20x baseline (a) python loop",
                                     python / statistics.median(vector) >= 20),
        "cross_venue_p99": metric(percentile(vector, 99) * ms, "ms", python * ms, "<= 5 ms including depth VWAP",
                                  percentile(vector, 99) * ms <= 5),
    }
    results["arbitrage_scan_through_feed_interface"] = metric(
        statistics.median(through_feed) * ms, "ms", statistics.median(end_to_end) * ms,
        "none (informative: Quote objects from the Feed interface to ranked candidates)", True,
    )
    write_results("scan", results)


if __name__ == "__main__":
    main()
