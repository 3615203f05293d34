"""The decide pipeline end to end on one opportunity: three stored verdicts, once."""
from decimal import Decimal as D

import pytest

from decisions.models import Controls, Decision, RiskDay, RiskLimits
from execution.deciding import decide_opportunity, execute_opportunity
from execution.models import Trade
from scanners.models import Opportunity

from ..execution.recorded import recorded_market
from ..execution.test_executors import T0, opportunity, realism

pytestmark = pytest.mark.django_db

GOOD = {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "a", "sell_venue": "b", "buy_price": "100",
        "sell_price": "102", "size": "50", "net_pct": "1.6", "expected_profit": "80", "expected_profit_usd": "80"}


@pytest.fixture
def feed(tmp_path):
    return recorded_market(tmp_path, venues={"a": ("crypto", "0.001"), "b": ("crypto", "0.001")}, books=[
        ("a", "BTC/USDT", T0, [("99.9", "100")], [("100", "100")]),
        ("b", "BTC/USDT", T0, [("102", "100")], [("102.1", "100")]),
        ("a", "BTC/USDT", T0 + 30_000, [("99.9", "100")], [("100", "100")]),
    ])


def arbitrage(route="xv:BTC/USDT:a>b", figures=GOOD):
    opp = opportunity("arbitrage", figures, route=route)
    Opportunity.objects.filter(pk=opp.pk).update(net_pct=D(figures["net_pct"]))
    return opp


def auto_execute(on=True, kill=False):
    controls = Controls.get_solo()
    controls.auto_execute, controls.kill_switch = on, kill
    controls.save()


def verdicts(opp):
    return {d.layer: d for d in Decision.objects.filter(opportunity=opp)}


def test_display_only_stores_every_layer_and_reserves_nothing(feed):
    auto_execute(False)
    opp = arbitrage()
    outcome = decide_opportunity(opportunity_id=opp.pk, feed=feed)
    assert outcome.created and outcome.verdict == "display"
    rows = verdicts(opp)
    assert rows["agent"].verdict == "approve" and rows["risk"].verdict == "approved"
    assert rows["governor"].reasons == ["DISPLAY_ONLY"] and rows["risk"].level == "LOW"
    assert rows["agent"].size_usd == D("2500")  # 50 × 100 = 5,000 (under the 10,000 cap) × the agent's 0.5 on no history
    assert not RiskDay.objects.filter(trades__gt=0).exists()
    assert Opportunity.objects.get(pk=opp.pk).status == Opportunity.DECIDED


def test_deciding_twice_stores_one_set(feed):
    opp = arbitrage()
    first = decide_opportunity(opportunity_id=opp.pk, feed=feed)
    again = decide_opportunity(opportunity_id=opp.pk, feed=feed)
    assert first.created and not again.created and again.verdict == first.verdict
    assert Decision.objects.filter(opportunity=opp).count() == 3


def test_auto_execute_reserves_the_slot_and_the_executor_fills_the_approved_size(feed):
    auto_execute(True)
    realism("optimistic")
    opp = arbitrage()
    assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "execute"
    assert RiskDay.objects.get().trades == 1
    trade = execute_opportunity(opportunity_id=opp.pk, feed=feed)
    assert trade.status == Trade.CLOSED and trade.size_usd == verdicts(opp)["risk"].size_usd


def test_stale_data_is_denied_never_approved_with_a_warning(feed):
    auto_execute(True)
    opp = arbitrage()
    feed.at(T0 + 20_000)  # both books are 20 s old (max age 5 s)
    outcome = decide_opportunity(opportunity_id=opp.pk, feed=feed)
    assert outcome.verdict == "skip" and verdicts(opp)["governor"].reasons == ["STALE_DATA"]
    assert Opportunity.objects.get(pk=opp.pk).status == Opportunity.REJECTED
    assert not RiskDay.objects.filter(trades__gt=0).exists()


def test_kill_switch_halts_execution_but_verdicts_are_still_stored(feed):
    auto_execute(True, kill=True)
    opp = arbitrage()
    assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "skip"
    assert verdicts(opp)["governor"].reasons == ["KILL_SWITCH"] and len(verdicts(opp)) == 3


def test_a_changed_limit_applies_to_the_very_next_decision(feed):
    auto_execute(True)
    first = arbitrage(route="r1")
    assert decide_opportunity(opportunity_id=first.pk, feed=feed).verdict == "execute"
    limits = RiskLimits.get_solo()
    limits.max_trades_per_day = 1
    limits.save()
    second = arbitrage(route="r2")
    assert decide_opportunity(opportunity_id=second.pk, feed=feed).verdict == "skip"
    rows = verdicts(second)
    assert rows["risk"].verdict == "blocked" and rows["risk"].reasons == ["TRADE_COUNT"]
    assert rows["governor"].reasons == ["RISK_BLOCKED", "TRADE_COUNT"]
    assert RiskDay.objects.get().trades == 1


def test_auto_thresholds_not_met_display_with_the_missed_ones(feed):
    auto_execute(True)
    opp = arbitrage(figures={**GOOD, "expected_profit": "20", "expected_profit_usd": "20"})
    assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "display"
    governor = verdicts(opp)["governor"]
    assert governor.reasons == ["AUTO_THRESHOLDS"] and governor.figures["auto_thresholds_missed"] == ["expected_profit_usd"]


def test_pending_opportunities_are_the_recent_undecided_and_the_approved_without_a_trade():
    from datetime import timedelta

    from django.utils import timezone

    from decisions.pipeline import pending_opportunity_ids

    def aged(seconds, status, verdict=None):
        opp = arbitrage(route=f"r{seconds}{status}{verdict}")
        Opportunity.objects.filter(pk=opp.pk).update(status=status, detected_at=timezone.now() - timedelta(seconds=seconds))
        if verdict:
            Decision.objects.create(opportunity=opp, layer=Decision.GOVERNOR, verdict=verdict,
                                    decided_at=timezone.now(), market_ts=T0)
        return opp.pk

    undecided = aged(120, Opportunity.DETECTED)
    approved = aged(120, Opportunity.DECIDED, "execute")
    aged(120, Opportunity.DECIDED, "display")  # decided: nothing to do
    aged(10, Opportunity.DETECTED)  # its message may still be on its way
    aged(7200, Opportunity.DETECTED)  # too old to act on
    assert pending_opportunity_ids(now=timezone.now(), older_than_s=60, limit=10) == {undecided, approved}
    assert pending_opportunity_ids(now=timezone.now() - timedelta(hours=3), older_than_s=60, limit=10) == set()


@pytest.mark.parametrize("kind", ["arbitrage", "forex", "binary"])
def test_the_agent_reads_what_it_learned_once(feed, kind):
    """The agent reads every key its verdict needs in one query, before the risk rows' locks."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from decisions.agents import ArbitrageAgent, BinaryAgent, ForexAgent
    from decisions.models import AgentState

    from ..execution.test_executors import FOREX

    if kind == "arbitrage":
        opp = arbitrage()
        ArbitrageAgent().learn_route(opp.route, realized=D("-5"), expected=D("80"))
    elif kind == "forex":
        opp = opportunity("forex", FOREX, symbol="EUR/USD")
        ForexAgent().update_signal_result("EUR/USD", "BUY", False)
    else:
        opp = opportunity("binary", {"symbol": "BTC/USDT", "venue": "b", "direction": "CALL", "expiry_s": "60",
                                     "probability": "0.8", "payout": "0.85", "entry_price": "101"}, direction="CALL")
        BinaryAgent().learn_expiry("BTC/USDT", "CALL", 60, predicted=D("0.8"), won=False)
    with CaptureQueriesContext(connection) as queries:
        decide_opportunity(opportunity_id=opp.pk, feed=feed)
    reads = [q["sql"] for q in queries.captured_queries if AgentState._meta.db_table in q["sql"]]
    assert len(reads) == 1, reads
    learned = verdicts(opp)["agent"].figures
    assert learned.get("trades", learned.get("signal_trades", learned.get("settled"))) == 1  # what it learned counted


def booked(opp):
    """What an execution wrote, beside its trade: the figures two ways of booking must agree on."""
    trade = Trade.objects.get(opportunity=opp)
    fills = [(f.leg, f.venue, f.side, f.quantity, f.price, f.fee) for f in trade.fills.order_by("leg")]
    return {"status": trade.status, "size": trade.size_usd, "pnl": trade.realized_pnl, "fees": trade.fees_usd,
            "edge": trade.edge, "fills": fills, "opportunity": Opportunity.objects.get(pk=opp.pk).status}


def test_with_execute_the_approved_opportunity_is_booked_in_its_deciding_transaction(feed, django_capture_on_commit_callbacks):
    """The same trade, fills, balances and risk day as deciding and then executing on its own; in one
    transaction (one set of commit callbacks, the decision's event before the trade's)."""
    from execution.models import Balance
    from execution.portfolio import cash_account, current_portfolio
    from trifecta_site import events

    from ..execution.test_executors import assert_balances_consistent

    auto_execute(True)
    realism("optimistic")
    first = arbitrage(route="xv:one")
    decide_opportunity(opportunity_id=first.pk, feed=feed)
    execute_opportunity(opportunity_id=first.pk, feed=feed)  # on its own; seeds the venues' inventory
    before = {(b.venue, b.currency): b.total for b in Balance.objects.all()}
    second = arbitrage(route="xv:two")
    published = []
    events.publish, original = (lambda kind, payload: published.append(kind)), events.publish
    try:
        with django_capture_on_commit_callbacks(execute=True) as callbacks:
            outcome = decide_opportunity(opportunity_id=second.pk, feed=feed, execute=True)
    finally:
        events.publish = original
    assert outcome.verdict == "execute" and outcome.trade == Trade.objects.get(opportunity=second)
    assert published == ["decision", "trade"] and callbacks  # each event once, after the commit
    assert booked(second) == booked(first) and booked(second)["opportunity"] == Opportunity.EXECUTED
    pnl = booked(second)["pnl"]
    moved = {(b.venue, b.currency): b.total - before[(b.venue, b.currency)] for b in Balance.objects.all()}
    assert moved[("desk", "USD")] == pnl and cash_account(current_portfolio()).total == D("100000") + 2 * pnl
    assert moved[("a", "BTC")] == -moved[("b", "BTC")] == booked(second)["fills"][0][3]
    day = RiskDay.objects.get()
    assert day.trades == 2 and day.realized_pnl == 2 * pnl
    assert_balances_consistent()


def test_what_the_deciding_transaction_cannot_book_yet_is_left_to_the_executor(feed):
    """Inventory used for the first time is seeded and booked with the decision; a fill time the
    feed has not reached leaves the decision stored alone, and execution books it afterwards."""
    from scanners.feeds.replay import ReplayClock, ReplayFeed

    auto_execute(True)
    realism("optimistic")
    opp = arbitrage()
    outcome = decide_opportunity(opportunity_id=opp.pk, feed=feed, execute=True)
    assert outcome.verdict == "execute" and outcome.trade == Trade.objects.get(opportunity=opp)
    assert Opportunity.objects.get(pk=opp.pk).status == Opportunity.EXECUTED and outcome.trade.status == Trade.CLOSED
    assert execute_opportunity(opportunity_id=opp.pk, feed=feed) == outcome.trade  # once
    realism("realistic", latency_ms=250)
    later = arbitrage(route="xv:later")
    live = ReplayFeed(feed.reader, ReplayClock.realtime(T0, T0 + 60_000, anchor_wall_ms=0, wall_clock=lambda: 0))
    outcome = decide_opportunity(opportunity_id=later.pk, feed=live, execute=True)  # the clock stands at T0
    assert outcome.verdict == "execute" and outcome.trade is None
    assert Opportunity.objects.get(pk=later.pk).status == Opportunity.DECIDED
    assert RiskDay.objects.get().trades == 2 and Trade.objects.count() == 1


def test_a_size_the_risk_manager_halves_is_booked_halved(feed):
    """The fill is planned before the locks at the size the agent proposes; at HIGH risk the
    risk manager halves it under them, and the trade is planned again at the approved size."""
    from execution.models import Balance

    auto_execute(True)
    realism("optimistic")
    seeded = arbitrage(route="xv:seed")
    decide_opportunity(opportunity_id=seeded.pk, feed=feed)
    execute_opportunity(opportunity_id=seeded.pk, feed=feed)  # the venues' inventory exists from here on
    limits = RiskLimits.get_solo()
    limits.max_trades_per_day = 10
    limits.save()
    RiskDay.objects.update(trades=8)  # 80 % of the day's count: HIGH
    opp = arbitrage(route="xv:high")
    outcome = decide_opportunity(opportunity_id=opp.pk, feed=feed, execute=True)
    risk = verdicts(opp)["risk"]
    assert risk.level == "HIGH" and risk.size_usd == verdicts(opp)["agent"].size_usd / 2
    assert outcome.trade is not None and Trade.objects.get(opportunity=opp).size_usd == risk.size_usd
    assert Trade.objects.get(opportunity=opp).fills.get(leg=1).quantity == Trade.objects.get(opportunity=seeded).fills.get(leg=1).quantity / 2
    assert Balance.objects.filter(free__lt=0).count() == 0
