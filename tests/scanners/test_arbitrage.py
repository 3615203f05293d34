"""Arbitrage with hand-checkable numbers, the vectorised kernel against Decimal, real recordings."""
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from scanners.arbitrage import ArbitrageThresholds, RouteHistory, TriangleIndex, scan_arbitrage
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from tests.conftest import shared_recording

from .market import D, MemoryMarket

NOW = 1_000_000
LOOSE = ArbitrageThresholds(min_net_pct=D("-100"), max_risk_score=D("100"))


def cross(result):
    return [c.figures for c in result.candidates if c.figures["type"] == "cross_venue"]


def test_cross_venue_net_of_both_fees_top_of_book():
    market = MemoryMarket(NOW, fees={"a": "0.001", "b": "0.002"})
    market.set_quote("a", "BTC/USD", "99", "100", bid_size="1", ask_size="2")
    market.set_quote("b", "BTC/USD", "101", "102", bid_size="0.5", ask_size="3")
    result = scan_arbitrage(market, now=NOW, thresholds=ArbitrageThresholds(min_net_pct=D("0.5")))
    [best] = cross(result)
    # buy a at 100 (+0.1 %), sell b at 101 (−0.2 %): 100.798 / 100.1 − 1 = 0.697303 %
    assert (best["buy_venue"], best["sell_venue"]) == ("a", "b")
    assert best["net_pct"] == D("0.697303") and best["gross_pct"] == D("1.000000")
    assert best["size"] == D("0.5")  # the smaller quoted size
    # 0.5 × 101 × 0.998 − 0.5 × 100 × 1.001 = 50.399 − 50.05
    assert best["expected_profit"] == D("0.349") and best["expected_profit_usd"] == D("0.349")
    assert result.evaluated == 2


def test_three_level_vwap_at_the_profit_maximising_size():
    market = MemoryMarket(NOW, fees={"a": "0", "b": "0"})
    market.set_book("a", "ETH/USD", bids=[("99", "5")], asks=[("100", "1"), ("101", "1"), ("102", "1"), ("104", "5")])
    market.set_book("b", "ETH/USD", bids=[("105", "1.5"), ("103", "1"), ("102.5", "2")], asks=[("106", "1")])
    [best] = cross(scan_arbitrage(market, now=NOW, thresholds=LOOSE))
    # Walk: 1 @100 vs 105, 0.5 @101 vs 105, 0.5 @101 vs 103, 0.5 @102 vs 103, 0.5 @102 vs 102.5,
    # then ask 104 vs bid 102.5: stop. Size 3; cost 100 + 101 + 102 = 303;
    # proceeds 1.5 × 105 + 1 × 103 + 0.5 × 102.5 = 311.75.
    assert best["size"] == D("3")
    assert best["buy_price"] == D("101") and best["sell_price"] == D("311.75") / 3
    assert best["expected_profit"] == D("8.75")
    assert best["depth_levels_used"] == [3, 3]
    assert best["net_pct"] == D("2.887789")


def test_fees_can_remove_a_gross_spread():
    market = MemoryMarket(NOW, fees={"a": "0.0025", "b": "0.0025"})
    market.set_quote("a", "BTC/USD", "99.9", "100", "1", "1")
    market.set_quote("b", "BTC/USD", "100.4", "100.5", "1", "1")
    result = scan_arbitrage(market, now=NOW, thresholds=ArbitrageThresholds(min_net_pct=D("0")))
    assert result.candidates == []  # +0.4 % gross, −0.1 % net


def test_crossed_stale_and_mismatched_quotes_are_skipped_and_counted():
    market = MemoryMarket(NOW)
    market.set_quote("a", "BTC/USD", "101", "100", "1", "1")  # crossed
    market.set_quote("b", "BTC/USD", "99", "99.5", "1", "1")
    market.set_quote("c", "BTC/USD", "120", "121", "1", "1", ts=NOW - 60_000)  # stale
    market.set_quote("d", "BTC/USDC", "150", "151", "1", "1")  # not BTC/USD
    result = scan_arbitrage(market, now=NOW, thresholds=LOOSE)
    assert result.candidates == []
    assert result.skipped == {"crossed_quote": 1, "stale_quote": 1, "quote_currency_mismatch": 2}


def test_a_triangle_with_a_known_product_in_both_directions():
    market = MemoryMarket(NOW, fees={"v": "0.001"})
    market.set_quote("v", "BTC/USD", "10000", "10010", "1", "1")
    market.set_quote("v", "ETH/BTC", "0.05", "0.0501", "10", "10")
    market.set_quote("v", "ETH/USD", "505", "506", "10", "10")
    result = scan_arbitrage(market, now=NOW, thresholds=LOOSE)
    paths = {tuple((leg["side"], leg["symbol"]) for leg in c.figures["path"]): c.figures for c in result.candidates}
    forward = paths[(("buy", "BTC/USD"), ("buy", "ETH/BTC"), ("sell", "ETH/USD"))]
    # USD → BTC at 1/10010, BTC → ETH at 1/0.0501, ETH → USD at 505, each × 0.999:
    expected = (D(1) / D("10010")) * (D(1) / D("0.0501")) * D("505") * D("0.999") ** 3 - 1
    assert forward["net_pct"] == (expected * 100).quantize(D("0.000001"))
    assert forward["start_currency"] == "USD"
    backward = paths[(("buy", "ETH/USD"), ("sell", "ETH/BTC"), ("sell", "BTC/USD"))]
    expected_back = (D(1) / D("506")) * D("0.05") * D("10000") * D("0.999") ** 3 - 1
    assert backward["net_pct"] == (expected_back * 100).quantize(D("0.000001"))
    # size: leg 1 can take 1 BTC × 10010 = 10010 USD; leg 2 10 ETH × 0.0501 BTC = 0.501 BTC = 5015.01 USD in
    assert forward["size"] == (D("0.501") * D("10010") / D("0.999")).quantize(D("0.00000001"), rounding="ROUND_DOWN")


def test_withdrawal_fees_lower_the_net_when_rebalancing():
    market = MemoryMarket(NOW, fees={"a": "0", "b": "0"})
    market.set_quote("a", "BTC/USD", "99", "100", "1", "1")
    market.set_quote("b", "BTC/USD", "102", "103", "1", "1")
    plain = cross(scan_arbitrage(market, now=NOW, thresholds=LOOSE))[0]
    fees = {("a", "BTC"): D("0.0005"), ("b", "USD"): D("5")}
    costly = cross(scan_arbitrage(market, now=NOW, thresholds=LOOSE, withdrawal_fees=fees, rebalance=True))[0]
    # one tenth (rebalance_trades = 10) of 0.0005 BTC × 102 + 5 USD = 0.5051
    assert plain["expected_profit"] - costly["expected_profit"] == D("0.5051")


def test_risk_grows_with_quote_age_and_degraded_venues():
    def score(age, status="ok"):
        market = MemoryMarket(NOW)
        market.set_quote("a", "BTC/USD", "99", "100", "1", "1", ts=NOW - age)
        market.set_quote("b", "BTC/USD", "102", "103", "1", "1")
        result = scan_arbitrage(market, now=NOW, thresholds=LOOSE, venue_status={"a": status})
        return cross(result)[0], result.candidates[0].risk_score

    assert score(0)[1] < score(2500)[1] < score(4900)[1]
    assert score(0, "degraded")[1] == score(0)[1] + 15


def test_venues_that_are_down_are_not_used():
    market = MemoryMarket(NOW)
    market.set_quote("a", "BTC/USD", "99", "100", "1", "1")
    market.set_quote("b", "BTC/USD", "102", "103", "1", "1")
    result = scan_arbitrage(market, now=NOW, thresholds=LOOSE, venue_status={"b": "down"})
    assert result.candidates == [] and result.skipped["venue_down"] == 1


def reference_net(index, bids, asks, fees, cycle):
    """Pure Decimal evaluation of one cycle."""
    rate = D(1)
    for market, sells in zip(index.legs[cycle], index.sells[cycle]):
        fee = D(float(fees[market]))
        rate *= D(float(bids[market])) * (1 - fee) if sells else (1 - fee) / D(float(asks[market]))
    return rate - 1


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(min_value=0.5, max_value=2.0), min_size=12, max_size=12), st.floats(0, 0.01))
def test_vectorised_kernel_matches_decimal_and_incremental_matches_full(prices, fee):
    symbols = ["B/A", "C/A", "C/B", "D/A", "D/B", "D/C"]
    index = TriangleIndex.build(symbols)
    bids = np.array(prices[:6])
    asks = bids * (1 + np.array(prices[6:]) / 100)
    fees = np.full(6, fee)
    net = index.evaluate(bids, asks, fees)
    assert len(index) == 8 * 1  # 4 currency triangles × 2 directions
    for cycle in range(len(index)):
        assert net[cycle] == pytest.approx(float(reference_net(index, bids, asks, fees, cycle)), rel=1e-9, abs=1e-12)
    asks2 = asks.copy()
    asks2[2] *= 1.01
    touched, renet = index.reevaluate(bids, asks2, fees, 2)
    assert np.array_equal(touched, index.cycles_touching(2))
    assert np.allclose(renet, index.evaluate(bids, asks2, fees)[touched])
    assert np.allclose(index.evaluate(bids, asks2, fees, touched), renet)
    untouched = np.setdiff1d(np.arange(len(index)), touched)
    assert np.allclose(index.evaluate(bids, asks2, fees)[untouched], net[untouched])


def replay(name, at):
    reader = RecordingReader(shared_recording(name))
    return reader, ReplayFeed(reader, ReplayClock.stepped(at))


def test_crossed_fxcm_quotes_give_no_arbitrage():
    reader, feed = replay("fx-brokers-2014-05", 0)
    history = RouteHistory()
    crossed_seen = 0
    for minute in range(reader.start, reader.start + 86_400_000, 60_000):
        result = scan_arbitrage(feed.at(minute), now=minute, thresholds=ArbitrageThresholds(min_net_pct=D("-100"), max_quote_age_ms=120_000), history=history)
        crossed_seen += result.skipped.get("crossed_quote", 0)
        for candidate in result.candidates:
            buy = feed.quote(candidate.figures["buy_venue"], "EUR/USD")
            sell = feed.quote(candidate.figures["sell_venue"], "EUR/USD")
            assert not buy.crossed and not sell.crossed
        assert not [c for c in result.candidates if c.figures["net_pct"] >= D("0.5")]
    assert crossed_seen > 0


def test_coinbase_triangles_are_evaluated_every_minute():
    reader, feed = replay("coinbase-triangles-2019-08-16", 0)
    history = RouteHistory()
    evaluated = []
    for minute in range(reader.start, reader.end + 1, 60_000):
        result = scan_arbitrage(feed.at(minute), now=minute, thresholds=LOOSE, history=history)
        evaluated.append(result.evaluated)
        assert all(c.figures["type"] == "triangular" for c in result.candidates)
    assert len(evaluated) == 480 and min(evaluated) >= 4  # USD-BTC-BCH and EUR-BTC-BCH, both ways


def test_eur_usd_between_the_two_brokers_is_scanned_every_minute():
    reader, feed = replay("fx-brokers-2014-05", 0)
    history = RouteHistory()
    scanned = both_quoted = 0
    thresholds = ArbitrageThresholds(min_net_pct=D("-100"), max_risk_score=D("100"), max_quote_age_ms=120_000)
    for minute in range(reader.start, reader.start + 24 * 3_600_000, 60_000):
        feed.at(minute)
        if not (feed.quote("fxcm", "EUR/USD") and feed.quote("oanda", "EUR/USD")):
            continue  # the brokers' recordings start at different hours (a partial first day)
        both_quoted += 1
        result = scan_arbitrage(feed, now=minute, thresholds=thresholds, history=history)
        scanned += result.evaluated == 2 or sum(result.skipped.values()) > 0
    assert both_quoted > 600 and scanned == both_quoted


def test_a_triangle_walks_its_three_books_until_the_cycle_stops_paying():
    market = MemoryMarket(NOW, fees={"v": "0"})
    market.set_book("v", "BTC/USD", bids=[("99", "5")], asks=[("100", "1"), ("110", "5")])
    market.set_book("v", "ETH/BTC", bids=[("0.049", "100")], asks=[("0.05", "100")])
    market.set_book("v", "ETH/USD", bids=[("5.2", "100")], asks=[("5.3", "100")])
    result = scan_arbitrage(market, now=NOW, thresholds=ArbitrageThresholds(min_net_pct=D("1")))
    [best] = result.candidates
    f = best.figures
    # USD → BTC at 100 (1 BTC on the first level), → ETH at 0.05, → USD at 5.2: 1/100 × 1/0.05 × 5.2 = 1.04.
    # The first BTC level holds 100 USD worth; at the next level (110) the cycle returns 0.945: stop.
    assert [leg["symbol"] for leg in f["path"]] == ["BTC/USD", "ETH/BTC", "ETH/USD"]
    assert f["size"] == D("100") and f["expected_profit"] == D("4") and f["net_pct"] == D("4.000000")
    assert [leg["price"] for leg in f["path"]] == [D("100"), D("0.05"), D("5.2")]
    assert [leg["levels_used"] for leg in f["path"]] == [1, 1, 1]
