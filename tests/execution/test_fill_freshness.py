"""A paper fill meets the market in force at its fill time, never a later one, and never one
older than the maximum quote age: every fill says how old its prices were."""
from decimal import Decimal as D

import pytest

from execution.deciding import execute_opportunity
from execution.models import Trade

from .recorded import recorded_market
from .test_executors import CROSS, T0, opportunity, realism

pytestmark = pytest.mark.django_db


def market(tmp_path, *, b_book_at):
    return recorded_market(tmp_path, venues={"a": ("crypto", "0.001"), "b": ("crypto", "0.002")}, books=[
        ("a", "BTC/USDT", T0 + 100, [("99", "1")], [("100", "10")]),
        ("b", "BTC/USDT", b_book_at, [("103", "10")], [("104", "10")]),
        ("a", "BTC/USDT", T0 + 60_000, [("99", "1")], [("200", "10")]),  # a later state the fill must not see
    ], at=T0)


def test_a_book_older_than_the_max_age_at_fill_time_is_refused_and_nothing_fills(tmp_path):
    """b's only book is 60 s older than the fill (T0 + 250 ms latency): no leg fills on it."""
    realism("realistic", latency_ms=250, max_quote_age_ms=5000)
    feed = market(tmp_path, b_book_at=T0 - 59_750)
    trade = execute_opportunity(opportunity_id=opportunity("arbitrage", CROSS).pk, feed=feed, size_usd=D("100"),
                                decided_ts=T0)
    assert trade.status == Trade.REJECTED and trade.reject_reason == "STALE_PRICE"
    assert trade.edge["book_age_ms"] == 60_000 and trade.edge["venue"] == "b"
    assert not trade.fills.exists()


def test_a_fill_records_each_book_age_and_meets_the_state_in_force_not_a_later_one(tmp_path):
    """Fill at T0 + 250: a's book from T0 + 100 is 150 ms old, b's from T0 − 1,000 is 1,250 ms old;
    a's book of T0 + 60 s (asks at 200) is never met."""
    realism("realistic", latency_ms=250, max_quote_age_ms=5000)
    feed = market(tmp_path, b_book_at=T0 - 1000)
    trade = execute_opportunity(opportunity_id=opportunity("arbitrage", CROSS).pk, feed=feed, size_usd=D("100"),
                                decided_ts=T0)
    buy, sell = trade.fills.order_by("leg")
    assert buy.evidence["book_age_ms"] == 150 and sell.evidence["book_age_ms"] == 1250
    assert buy.price > D("100") - D("0.01") and buy.price < D("101")  # 100 plus the realistic preset's slippage
    assert all(f.evidence["book_age_ms"] >= 0 for f in trade.fills.all())


def test_a_forex_entry_on_bar_only_data_pays_the_instrument_spread(tmp_path):
    """No quotes, only minute bars (bid closes): a BUY enters at the close plus the spread the
    opportunity carries (from settings), never at the bare close."""
    from .test_executors import FOREX

    realism("optimistic")
    feed = recorded_market(tmp_path, venues={"fx": ("forex", "0")}, bars=[
        ("fx", "EUR/USD", "1m", T0 - 60_000, "1.1000", "1.1001", "1.0999", "1.1000"),
        ("fx", "EUR/USD", "1m", T0, "1.1000", "1.1001", "1.0999", "1.1000"),
    ], at=T0 + 60_000)
    figures = {**FOREX, "entry": "1.1002", "spread": "0.0002"}
    opp = opportunity("forex", figures, route="fx:fx:EUR/USD", direction="BUY")
    trade = execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("11002"), decided_ts=T0 + 60_000)
    assert trade.status == Trade.OPEN, trade.edge
    assert trade.position.entry_price == D("1.1002") and trade.edge["entry_spread"] == "0.0002"
