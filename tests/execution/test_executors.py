"""Executors and the monitor on tiny recordings, with numbers a person can check by hand."""
from decimal import Decimal as D

import pytest

from decisions.models import AgentState, RiskDay, RiskState
from execution import deciding as executors
from execution.models import Balance, ExecutionSettings, Fill, Position, Trade, stored
from execution.monitor import monitor_positions
from execution.portfolio import cash_account, current_portfolio, desk_exposure
from trifecta_site.clock import ms_to_datetime
from scanners.models import Opportunity

from .recorded import recorded_market

pytestmark = pytest.mark.django_db
T0 = 1_700_000_000_000  # a Tuesday, 22:13:20 UTC


def opportunity(kind, figures, *, route="r", direction="", symbol=None, ts=T0):
    return Opportunity.objects.create(
        kind=kind, type=figures.get("type", ""), symbol=symbol or figures.get("symbol", ""), venues=[],
        direction=direction, route=route, risk_score=D("10"), figures=figures, rank=1,
        observed_at=ms_to_datetime(ts), market_ts=ts, detected_at=ms_to_datetime(ts),
    )


def realism(preset, **fields):
    settings = ExecutionSettings.get_solo()
    settings.realism = preset
    for name, value in fields.items():
        setattr(settings, name, value)
    settings.save()


def assert_balances_consistent():
    for balance in Balance.objects.all():  # SQLite keeps 15 significant digits: within 1e-8, exact on PostgreSQL
        assert abs(balance.total - balance.free - balance.reserved) < D("1e-8"), balance
    assert not Balance.objects.filter(free__lt=0).exists()


def cross_venue_market(tmp_path):
    return recorded_market(tmp_path, venues={"a": ("crypto", "0.001"), "b": ("crypto", "0.002")}, books=[
        ("a", "BTC/USDT", T0, [("99", "1")], [("100", "1"), ("101", "2"), ("102", "5")]),
        ("b", "BTC/USDT", T0, [("103", "10")], [("104", "10")]),
    ])


CROSS = {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "a", "sell_venue": "b", "buy_price": "101",
         "sell_price": "103", "size": "4", "expected_profit": "6.772", "expected_profit_usd": "6.772"}


def test_cross_venue_fills_both_legs_through_the_book_and_realizes_after_fees(tmp_path):
    realism("optimistic")
    feed = cross_venue_market(tmp_path)
    opp = opportunity("arbitrage", CROSS, route="xv:BTC/USDT:a>b")
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("1000"), decided_ts=T0)
    # buy 4 on a: 1 @ 100 + 2 @ 101 + 1 @ 102 = 404, fee 0.404; sell 4 on b @ 103 = 412, fee 0.824
    assert trade.status == Trade.CLOSED and trade.realized_pnl == D("6.772")
    assert trade.fees_usd == D("1.228")
    buy, sell = Fill.objects.filter(trade=trade)
    assert (buy.quantity, buy.price, buy.evidence["levels_used"]) == (D("4"), D("101"), 3)
    assert (sell.quantity, sell.price) == (D("4"), D("103"))
    edge = {k: D(v) for k, v in trade.edge.items()}
    # detected at the VWAP 101: the top (100) was 1 better, the depth 1 worse, per unit
    assert edge["latency_move"] == D("4") and edge["depth_slippage"] == D("-4") and edge["fees"] == D("-1.228")
    assert edge["expected"] + edge["latency_move"] + edge["depth_slippage"] + edge["fees"] + edge["size_and_leg_risk"] == edge["realized"]
    portfolio = current_portfolio()
    a_btc = Balance.objects.get(venue="a", currency="BTC")  # seeded with inventory_usd of BTC at the first mid, 99.5
    assert a_btc.usd_at_seed == D("99.5") and abs(a_btc.total - (D("20000") / D("99.5") + 4)) < D("1e-9")
    assert Balance.objects.get(venue="a", currency="USDT").total == D("20000") - D("404.404")
    assert Balance.objects.get(venue="b", currency="USDT").total == D("20000") + D("411.176")
    assert cash_account(portfolio).total == D("100000") + D("6.772")
    # the portfolio holds the inventory too: 4 balances seeded at $20,000 each, at seed prices still
    assert desk_exposure()[0].quantize(D("0.01")) == D("180006.77")
    assert Opportunity.objects.get(pk=opp.pk).status == Opportunity.EXECUTED
    assert AgentState.objects.get(agent="arbitrage", key="xv:BTC/USDT:a>b").wins == 1
    assert_balances_consistent()


def test_executing_twice_fills_once(tmp_path):
    realism("optimistic")
    feed = cross_venue_market(tmp_path)
    opp = opportunity("arbitrage", CROSS)
    first = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("1000"), decided_ts=T0)
    again = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("1000"), decided_ts=T0)
    assert first.pk == again.pk and Trade.objects.count() == 1 and Fill.objects.count() == 2
    assert cash_account(current_portfolio()).total == D("100006.772")


def test_a_trade_the_venue_balance_cannot_fund_is_rejected_and_its_slot_given_back(tmp_path):
    realism("optimistic", inventory_usd=D("100"))
    feed = cross_venue_market(tmp_path)
    RiskDay.objects.create(date=ms_to_datetime(T0).date(), trades=1)
    opp = opportunity("arbitrage", CROSS)
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("1000"), decided_ts=T0)
    assert trade.status == Trade.REJECTED and trade.reject_reason == "INSUFFICIENT_BALANCE"
    assert trade.edge["venue"] == "a" and trade.edge["currency"] == "USDT"
    assert not Fill.objects.exists() and RiskDay.objects.get().trades == 0
    assert cash_account(current_portfolio()).total == D("100000")
    assert Opportunity.objects.get(pk=opp.pk).status == Opportunity.REJECTED
    assert_balances_consistent()


def test_a_triangle_whose_last_leg_moved_during_latency_realizes_a_loss(tmp_path):
    realism("realistic", latency_ms=250)
    feed = recorded_market(tmp_path, venues={"x": ("crypto", "0.001")}, books=[
        ("x", "BTC/USDT", T0, [("99.9", "100")], [("100", "100")]),
        ("x", "ETH/BTC", T0, [("0.0499", "1000")], [("0.05", "1000")]),
        ("x", "ETH/USDT", T0, [("5.2", "10000")], [("5.21", "10000")]),
        ("x", "ETH/USDT", T0 + 600, [("4.9", "10000")], [("4.91", "10000")]),  # before the third leg's turn
    ])
    path = [{"symbol": "BTC/USDT", "side": "buy", "price": "100"}, {"symbol": "ETH/BTC", "side": "buy", "price": "0.05"},
            {"symbol": "ETH/USDT", "side": "sell", "price": "5.2"}]
    opp = opportunity("arbitrage", {"type": "triangular", "venue": "x", "path": path, "start_currency": "USDT",
                                    "size": "1000", "expected_profit": "36.9", "expected_profit_usd": "36.9", "fee": "0.001"})
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("1000"), decided_ts=T0)
    fills = list(Fill.objects.filter(trade=trade))
    assert [f.filled_ts for f in fills] == [T0 + 250, T0 + 500, T0 + 750]  # sequential legs
    btc = D("1000") / D("1.001") / 100
    eth = btc / D("1.001") / D("0.05")
    assert fills[0].quantity == stored(btc) and fills[1].quantity == stored(eth)
    assert fills[2].price == D("4.9")  # the book of T0 + 600, the first at or after T0 + 750 … or the last
    proceeds = eth * D("4.9") * D("0.999")
    assert trade.realized_pnl == stored(proceeds - 1000) < 0
    assert D(trade.edge["latency_move"]) == eth * (D("4.9") - D("5.2"))
    assert cash_account(current_portfolio()).total == D("100000") + trade.realized_pnl
    assert RiskState.objects.get().loss_streak == 1
    assert_balances_consistent()


def forex_market(tmp_path, quotes=(), bars=()):
    return recorded_market(tmp_path, venues={"fx": ("forex", "0")},
                           quotes=[("fx", "EUR/USD", T0, "1.1000", "1.1002"), *quotes], bars=bars)


FOREX = {"symbol": "EUR/USD", "venue": "fx", "signal": "BUY", "confidence": "0.8", "entry": "1.1002",
         "stop_loss": "1.0990", "take_profit": "1.1030", "risk_reward": "2.33"}


def open_forex(feed, figures=FOREX):
    opp = opportunity("forex", figures, route="fx:fx:EUR/USD", direction=figures["signal"])
    return executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("11002"), decided_ts=T0)


def test_forex_opens_at_the_ask_and_the_stop_loss_closes_it_at_the_quote(tmp_path):
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 5000, "1.0985", "1.0987")])
    trade = open_forex(feed)
    position = Position.objects.get(trade=trade)
    assert (position.entry_price, position.quantity) == (D("1.1002"), D("10000"))
    assert position.reserved_usd == stored(D("11002") / 30)
    assert cash_account(current_portfolio()).reserved == position.reserved_usd
    feed.at(T0 + 5000)
    assert monitor_positions(feed=feed) == {"stop_loss": 1}
    position.refresh_from_db()
    assert position.exit_price == D("1.0985") and position.realized_pnl == D("-17.0000")
    cash = cash_account(current_portfolio())
    assert cash.reserved == 0 and cash.total == D("100000") - 17
    assert AgentState.objects.get(agent="forex", key="EUR/USD:BUY").losses == 1
    assert RiskDay.objects.get().realized_loss == 17
    assert_balances_consistent()


def test_forex_take_profit_from_a_completed_bar(tmp_path):
    realism("optimistic")
    minute = T0 - T0 % 60_000 + 60_000
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", minute + 119_000, "1.1010", "1.1012")],
                        bars=[("fx", "EUR/USD", "1m", minute, "1.1001", "1.1035", "1.1000", "1.1010")])
    trade = open_forex(feed)
    feed.at(minute + 120_000)
    assert monitor_positions(feed=feed) == {"take_profit": 1}
    position = Position.objects.get(trade=trade)
    assert position.exit_price == D("1.1030") and position.realized_pnl == D("28.0000")
    assert position.closed_ts == minute + 60_000


def test_a_bar_touching_both_stop_and_target_is_a_stop(tmp_path):
    realism("optimistic")
    minute = T0 - T0 % 60_000 + 60_000
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", minute + 119_000, "1.1010", "1.1012")],
                        bars=[("fx", "EUR/USD", "1m", minute, "1.1001", "1.1040", "1.0980", "1.1010")])
    trade = open_forex(feed)
    feed.at(minute + 120_000)
    assert monitor_positions(feed=feed) == {"stop_loss": 1}
    assert Position.objects.get(trade=trade).realized_pnl == D("-12.0000")


def test_no_close_on_a_stale_price(tmp_path):
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 5000, "1.0985", "1.0987")])
    open_forex(feed)
    feed.at(T0 + 5000 + 60_000)  # the stop-crossing quote is a minute old now
    assert monitor_positions(feed=feed) == {"stale": 1}
    assert Position.objects.get().status == Position.OPEN


@pytest.mark.parametrize("settle, outcome, pnl", [("101.5", "win", D("8.5")), ("100.5", "loss", D("-10")),
                                                 ("101.0", "tie", D("0"))])
def test_binary_settles_on_the_recorded_price_at_expiry(tmp_path, settle, outcome, pnl):
    realism("optimistic")
    feed = recorded_market(tmp_path, venues={"b": ("crypto", "0.001")}, quotes=[
        ("b", "BTC/USDT", T0, "100.9", "101.1"),  # mid 101 at entry
        ("b", "BTC/USDT", T0 + 59_000, str(D(settle) - D("0.1")), str(D(settle) + D("0.1"))),
        ("b", "BTC/USDT", T0 + 61_000, "90", "90.2"),  # after expiry: must not count
    ])
    opp = opportunity("binary", {"symbol": "BTC/USDT", "venue": "b", "direction": "CALL", "expiry_s": "60",
                                 "probability": "0.8", "payout": "0.85", "entry_price": "101"}, direction="CALL")
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("10"), decided_ts=T0)
    position = Position.objects.get(trade=trade)
    assert position.entry_price == D("101") and position.expiry_ts == T0 + 60_000
    feed.at(T0 + 30_000)
    assert monitor_positions(feed=feed) == {"open": 1}
    feed.at(T0 + 61_000)
    assert monitor_positions(feed=feed) == {outcome: 1}
    position.refresh_from_db()
    assert position.exit_price == D(settle) and position.realized_pnl == pnl
    assert cash_account(current_portfolio()).total == D("100000") + pnl
    learned = AgentState.objects.filter(agent="binary").first()
    assert (learned is None) == (outcome == "tie")
    assert_balances_consistent()


def test_a_forex_position_past_its_maximum_holding_time_closes_at_market(tmp_path):
    realism("optimistic", max_holding_minutes=1)
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 61_000, "1.1005", "1.1007")])
    trade = open_forex(feed)
    feed.at(T0 + 3_000)
    assert monitor_positions(feed=feed) == {"open": 1}
    assert Position.objects.get(trade=trade).unrealized_pnl == D("-2.0000")  # bid 1.1000 against entry 1.1002
    feed.at(T0 + 61_000)
    assert monitor_positions(feed=feed) == {"max_hold": 1}
    position = Position.objects.get(trade=trade)
    assert position.exit_price == D("1.1005") and position.realized_pnl == D("3.0000")


def test_stats_count_trades_per_kind_and_route(tmp_path):
    from execution.portfolio import desk_stats

    realism("optimistic")
    feed = cross_venue_market(tmp_path)
    executors.execute_opportunity(opportunity_id=opportunity("arbitrage", CROSS, route="xv:BTC/USDT:a>b").pk, feed=feed,
                                  size_usd=D("1000"), decided_ts=T0)
    stats = desk_stats()
    assert stats["paper_trades"] == 1 and stats["win_rate"] == "1.0000"
    assert stats["per_kind"]["arbitrage"]["realized_pnl"] == "6.77"
    assert stats["per_route"][0]["route"] == "xv:BTC/USDT:a>b"
    assert stats["portfolio_value"] == "180006.77" and stats["realized_pnl"] == "6.77"  # with the inventory, $80,000 at seed
    assert stats["starting_value"] == "180000.00" and stats["cash"] == "100006.77"


def test_a_trade_is_announced_only_once_its_transaction_commits(tmp_path, monkeypatch, django_capture_on_commit_callbacks):
    from django.db import transaction

    from trifecta_site import events

    published = []
    monkeypatch.setattr(events, "publish", lambda kind, data: published.append(kind) or True)
    realism("optimistic")
    feed = cross_venue_market(tmp_path)
    rolled_back = opportunity("arbitrage", CROSS)
    with pytest.raises(RuntimeError), transaction.atomic():
        executors.execute_opportunity(opportunity_id=rolled_back.pk, feed=feed, size_usd=D("1000"), decided_ts=T0)
        raise RuntimeError("the surrounding transaction fails")
    assert not Trade.objects.exists() and published == []
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        executors.execute_opportunity(opportunity_id=opportunity("arbitrage", CROSS).pk, feed=feed,
                                      size_usd=D("1000"), decided_ts=T0)
    assert published == [] and callbacks  # nothing before the commit
    for callback in callbacks:
        callback()
    assert published == ["trade"]
