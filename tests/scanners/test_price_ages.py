"""Prices with ages on the scan side: stale books refused, the ages of what an opportunity used."""
from decimal import Decimal

from scanners.arbitrage import ArbitrageThresholds, scan_arbitrage

from .market import D, MemoryMarket

NOW = 10_000_000
THRESHOLDS = ArbitrageThresholds(min_net_pct=D("0.5"), max_risk_score=D("100"), max_quote_age_ms=5000)


def gap_market(book_ts):
    """Buy on a at 100, sell on b at 105 (no fees): 5 % gross on 1 unit of depth, books stamped `book_ts`."""
    market = MemoryMarket(NOW, fees={"a": "0", "b": "0"})
    market.set_book("a", "BTC/USD", bids=[("99", "1")], asks=[("100", "1")], ts=book_ts)
    market.set_book("b", "BTC/USD", bids=[("105", "1")], asks=[("106", "1")], ts=book_ts)
    market.set_quote("a", "BTC/USD", "99", "100", "1", "1", ts=NOW - 200)  # fresh quotes over the books
    market.set_quote("b", "BTC/USD", "105", "106", "1", "1", ts=NOW - 300)
    return market


def test_a_book_older_than_the_max_quote_age_is_refused_at_scan_though_its_quotes_are_fresh():
    stale = scan_arbitrage(gap_market(NOW - 60_000), now=NOW, thresholds=THRESHOLDS)
    assert stale.candidates == [] and stale.skipped["stale_book"] == 1  # a → b only: b → a loses


def test_a_book_exactly_at_the_max_age_is_used_and_the_ages_are_recorded():
    [candidate] = scan_arbitrage(gap_market(NOW - 5000), now=NOW, thresholds=THRESHOLDS).candidates
    f = candidate.figures
    assert f["net_pct"] == D("5.000000") and f["size"] == D("1")
    assert f["quote_age_ms"] == 300  # the older of the two quotes: NOW − (NOW − 300)
    assert f["book_age_ms"] == 5000
    assert candidate.observed_at == NOW - 5000  # the oldest price behind the figures is the book
    # the risk score's age part reads the book: 30 × 5000 / 5000 = 30 (+ depth 30 × 1 + volatility 25 × 0.5)
    assert candidate.risk_score == D("72.5")


def test_top_of_book_figures_have_no_book_age_and_never_a_negative_age():
    market = MemoryMarket(NOW, fees={"a": "0", "b": "0"})
    market.set_quote("a", "BTC/USD", "99", "100", "1", "1", ts=NOW + 40)  # a venue clock 40 ms ahead of ours
    market.set_quote("b", "BTC/USD", "105", "106", "1", "1", ts=NOW - 1200)
    [candidate] = scan_arbitrage(market, now=NOW, thresholds=THRESHOLDS).candidates
    assert candidate.figures["quote_age_ms"] == 1200 and candidate.figures["book_age_ms"] is None
    market.set_quote("b", "BTC/USD", "105", "106", "1", "1", ts=NOW + 40)
    [candidate] = scan_arbitrage(market, now=NOW, thresholds=THRESHOLDS).candidates
    assert candidate.figures["quote_age_ms"] == 0


def test_a_stale_book_on_one_leg_of_a_triangle_refuses_the_cycle():
    def triangle(eth_btc_book_ts):
        market = MemoryMarket(NOW, fees={"x": "0"})
        # USD → BTC at 100, BTC → ETH at 0.05 (ETH/BTC ask), ETH → USD at 5.5: 1 / 100 / 0.05 × 5.5 = 1.1
        market.set_book("x", "BTC/USD", bids=[("99", "10")], asks=[("100", "10")])
        market.set_book("x", "ETH/BTC", bids=[("0.049", "100")], asks=[("0.05", "100")], ts=eth_btc_book_ts)
        market.set_book("x", "ETH/USD", bids=[("5.5", "100")], asks=[("5.6", "100")])
        market.set_quote("x", "ETH/BTC", "0.049", "0.05", "100", "100")  # its quote is fresh
        return market

    fresh = scan_arbitrage(triangle(NOW), now=NOW, thresholds=THRESHOLDS)
    assert any(c.figures["type"] == "triangular" and c.figures["net_pct"] == D("10.000000") for c in fresh.candidates)
    [best] = [c for c in fresh.candidates if c.figures["type"] == "triangular"]
    assert best.figures["book_age_ms"] == 0 and best.figures["quote_age_ms"] == 0
    stale = scan_arbitrage(triangle(NOW - 6000), now=NOW, thresholds=THRESHOLDS)
    assert [c for c in stale.candidates if c.figures["type"] == "triangular"] == []
    assert stale.skipped["stale_book"] >= 1
    assert Decimal(1) / 100 / Decimal("0.05") * Decimal("5.5") == Decimal("1.1")
