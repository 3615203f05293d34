"""Fills with numbers a person can check by hand."""
from decimal import Decimal as D

from execution.fills import (
    BELOW_AMOUNT_STEP, BELOW_MIN_AMOUNT, BELOW_MIN_COST, BUY, NO_LIQUIDITY, SELL, MarketRules, fill_market_order,
)
from scanners.feeds.base import Book, Quote

BOOK = Book("v", "BTC/USDT", 1_000, bids=((D("99"), D("1")), (D("98"), D("3"))),
            asks=((D("100"), D("1")), (D("101"), D("2")), (D("102"), D("5"))))


def test_three_level_vwap_with_fee():
    fill = fill_market_order(side=BUY, book=BOOK, quantity=D("4"), fee_rate=D("0.001"), filled_ts=1_250, latency_ms=250)
    # 1 @ 100 + 2 @ 101 + 1 @ 102 = 404; VWAP 101; fee 0.1 % of 404
    assert fill.quantity == D("4") and fill.notional == D("404") and fill.price == D("101")
    assert fill.fee == D("0.404")
    assert fill.proceeds == D("-404.404")
    assert fill.levels == [["100", "1"], ["101", "2"], ["102", "1"]]
    assert fill.depth_share == D("0.5")  # 4 of the 8 visible
    evidence = fill.evidence()
    assert evidence["book_age_ms"] == 250 and evidence["latency_ms"] == 250 and evidence["top_price"] == "100"


def test_sell_walks_the_bids_and_reports_what_the_book_could_not_take():
    fill = fill_market_order(side=SELL, book=BOOK, quantity=D("5"))
    assert fill.quantity == D("4") and fill.unfilled == D("1")
    assert fill.notional == D("99") + D("294")


def test_top_of_book_without_depth_fills_up_to_its_size():
    quote = Quote("v", "BTC/USDT", 1_000, D("99"), D("100"), D("1"), D("2"))
    fill = fill_market_order(side=BUY, quote=quote, quantity=D("3"))
    assert fill.quantity == D("2") and fill.unfilled == D("1") and fill.price == D("100")


def test_quantity_rounds_down_to_the_step_never_up_to_the_minimum():
    rules = MarketRules(amount_step=D("0.01"), min_amount=D("2"))
    assert fill_market_order(side=BUY, book=BOOK, quantity=D("2.349"), rules=rules).quantity == D("2.34")
    rejected = fill_market_order(side=BUY, book=BOOK, quantity=D("1.999"), rules=rules)
    assert rejected.reject_reason == BELOW_MIN_AMOUNT and rejected.quantity == 0
    tiny = fill_market_order(side=BUY, book=BOOK, quantity=D("0.009"), rules=rules)
    assert tiny.reject_reason == BELOW_AMOUNT_STEP


def test_an_order_below_the_minimum_cost_is_rejected():
    fill = fill_market_order(side=BUY, book=BOOK, quantity=D("4"), rules=MarketRules(min_cost=D("1000")))
    assert fill.reject_reason == BELOW_MIN_COST and fill.quantity == 0 and fill.fee == 0


def test_spending_an_amount_buys_what_it_pays_for_including_the_fee():
    fill = fill_market_order(side=BUY, book=BOOK, spend=D("202.2"), fee_rate=D("0.001"))
    # 202.2 / 1.001 = 201.998… before fees: 1 @ 100, then 101.998… / 101 @ 101
    assert fill.quantity == 1 + (D("202.2") / D("1.001") - 100) / 101
    assert abs(fill.notional + fill.fee - D("202.2")) < D("1e-20") and fill.levels[0] == ["100", "1"]


def test_conservative_slippage_moves_prices_against_the_order_to_the_tick():
    rules = MarketRules(price_tick=D("0.5"))
    fill = fill_market_order(side=BUY, book=BOOK, quantity=D("1"), rules=rules, extra_slippage_bps=D("5"))
    assert fill.price == D("100.5")  # 100.05 rounded up to the tick
    sold = fill_market_order(side=SELL, book=BOOK, quantity=D("1"), rules=rules, extra_slippage_bps=D("5"))
    assert sold.price == D("98.5")  # 98.9505 rounded down


def test_an_empty_side_fills_nothing():
    empty = Book("v", "BTC/USDT", 1, bids=(), asks=())
    assert fill_market_order(side=BUY, book=empty, quantity=D("1")).reject_reason == NO_LIQUIDITY
