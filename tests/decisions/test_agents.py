"""Agents: Beta posteriors by hand, bounded learning, atomic updates under concurrency."""
import random
import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import close_old_connections, connection

from decisions.agents import ArbitrageAgent, BinaryAgent, ForexAgent, forex_prior, posterior_mean
from decisions.models import AgentState

pytestmark = pytest.mark.django_db
D = Decimal


def test_forex_skips_hold_and_low_confidence():
    agent = ForexAgent()
    assert agent.evaluate_signal("EUR/USD", "HOLD", D("0.9")).reasons == ["HOLD"]
    assert agent.evaluate_signal("EUR/USD", "BUY", D("0.59")).reasons == ["LOW_CONFIDENCE"]


def test_forex_score_and_multiplier_by_hand():
    agent = ForexAgent()
    fresh = agent.evaluate_signal("EUR/USD", "BUY", D("0.8"))
    # no history: both accuracies are the prior's 0.5 → 0.5 × 0.8 + 0.3 × 0.5 + 0.2 × 0.5 = 0.65
    assert fresh.score == D("0.6500") and fresh.size_multiplier == D("0.75")
    for _ in range(20):
        agent.update_signal_result("EUR/USD", "BUY", True)
    trusted = agent.evaluate_signal("EUR/USD", "BUY", D("0.8"))
    # 20 wins: (20 + 2) / (20 + 4) = 0.9167 → 0.4 + 0.275 + 0.1833 = 0.8583
    assert trusted.score == D("0.8583") and trusted.size_multiplier == D("1.0")


def test_one_outcome_moves_the_estimate_a_little():
    agent = ForexAgent()
    agent.update_signal_result("GBP/USD", "SELL", False)
    assert posterior_mean(0, 1) == D("0.4")  # not 0 after one loss
    assert agent.evaluate_signal("GBP/USD", "SELL", D("0.6")).score >= D("0.4")


def test_best_pairs_prefer_a_long_record_to_a_lucky_one():
    agent = ForexAgent()
    agent.update_signal_result("USD/JPY", "BUY", True)  # 1 of 1
    for index in range(40):
        agent.update_signal_result("EUR/USD", "BUY", index % 4 != 0)  # 30 of 40
    assert [pair for pair, _ in agent.get_best_pairs(2)] == ["EUR/USD", "USD/JPY"]


def test_arbitrage_agent_learns_realized_against_expected_per_route():
    agent = ArbitrageAgent()
    opportunity = SimpleNamespace(route="xv:BTC/USD:a>b", expected_profit=D("10"))
    assert agent.evaluate_opportunity(opportunity).score == D("0.5000")
    for _ in range(10):
        agent.learn_route("xv:BTC/USD:a>b", realized=D("-2"), expected=D("10"))
    verdict = agent.evaluate_opportunity(opportunity)
    # success (0 + 2) / (10 + 4) = 0.1429; realized / expected = (−20 + 10) / (100 + 10) < 0 → 0
    assert verdict.score == D("0") and not verdict.approved and verdict.reasons == ["AGENT_LOW_SCORE"]
    assert agent.reset() == 1 and AgentState.objects.count() == 0


def test_binary_probability_starts_at_a_coin_and_is_corrected_by_realized_outcomes():
    agent = BinaryAgent()
    fresh = agent.evaluate("BTC/USD", "CALL", 60, D("0.8"), payout=D("0.85"))
    assert fresh.probability == D("0.5000")  # the stated 0.8 is a signal's strength, not yet a probability
    assert fresh.edge_per_usd == D("0.5") * D("0.85") - D("0.5")  # −0.075: a coin at 85 % payout loses
    for index in range(20):
        agent.learn_expiry("BTC/USD", "CALL", 60, predicted=D("0.8"), won=index % 10 < 7)  # 14 of 20 against 0.5 each
    verdict = agent.evaluate("BTC/USD", "CALL", 60, D("0.8"), payout=D("0.85"))
    # no other signal of the kind: the key's bias (14 − 10 + 30 × 0) / (20 + 30) = 0.08
    assert verdict.probability == D("0.5800") and verdict.score == D("0.5800")
    # a signal with no outcomes of its own takes the others' bias: (0 + 30 × (14 − 10) / (20 + 30)) / (0 + 30)
    assert agent.evaluate("BTC/USD", "PUT", 60, D("0.8")).probability == D("0.5800")


def test_a_signal_s_own_outcomes_count_once_not_again_through_its_kind():
    """Ten straight wins on a kind's only signal: 0.5 + 5 / (10 + 30) = 0.625. Counted in the
    kind's bias too, they gave 0.5 + (5 + 30 × 5 / 40) / 40 = 0.7188, and a run of luck on a quiet
    night (fx-histdata-eurusd-ticks) was stated at 0.65 while it realized 0.51."""
    agent = BinaryAgent()
    for _ in range(10):
        agent.learn_expiry("EUR/USD", "CALL", 60, predicted=D("0.7"), won=True)
    assert agent.evaluate("EUR/USD", "CALL", 60, D("0.7")).probability == D("0.6250")


def test_a_forex_prior_within_the_holding_time_is_below_the_odds_without_one():
    """Target 20 pips, stop 10: 1/3 with all the time in the world; with an ATR of 2 pips per
    15-minute bar and 4 hours, a price rarely travels 20 pips, so the prior is lower."""
    figures = {"entry": "1.1000", "stop_loss": "1.0990", "take_profit": "1.1020", "atr": "0.0002", "bar_ms": 900_000}
    unlimited, _, _ = forex_prior(figures)
    limited, _, _ = forex_prior(figures, horizon_ms=4 * 3_600_000)
    assert unlimited == D("0.3333") and D(0) < limited < D("0.2")
    assert forex_prior({**figures, "prior_probability": "0.12"}, horizon_ms=1)[0] == D("0.12")  # as decided


def test_a_forex_prior_is_of_the_exit_side_price_a_spread_behind_the_entry():
    """BUY at the ask 1.1000 with a spread of 2 pips: the bid that stops or takes profit starts at
    1.0998, 22 pips below the target and 8 above the stop: 8 / 30 = 0.2667 (not 10 / 30)."""
    figures = {"entry": "1.1000", "stop_loss": "1.0990", "take_profit": "1.1020", "spread": "0.0002"}
    prior, win, loss = forex_prior(figures)
    assert prior == D("0.2667")
    assert (win, loss) == (D("0.0020") / D("1.1000"), D("0.0010") / D("1.1000"))  # what a fill wins or loses


def test_calibration_converges_on_a_seeded_sequence_of_outcomes():
    """Signals stated at 0.8 that really win 30 % of the time: the probability the agent
    gives them moves from 0.65 to the realized rate."""
    rng = random.Random(7)
    agent = BinaryAgent()
    outcomes = [rng.random() < 0.3 for _ in range(400)]
    for won in outcomes:
        agent.learn_expiry("ETH/USD", "PUT", 60, predicted=D("0.8"), won=won)
    realized = D(sum(outcomes)) / len(outcomes)
    assert abs(agent.evaluate("ETH/USD", "PUT", 60, D("0.8")).probability - realized) < D("0.03")


def test_the_forex_agent_vetoes_a_signal_without_positive_expected_pnl_once_it_has_the_evidence():
    """Target 20 pips, stop 10: the no-edge prior is 10 / 30 = 1/3 and the expected P&L 0, which
    is approved while evidence is thin; after 60 straight losses it is vetoed."""
    agent = ForexAgent()
    figures = {"entry": "1.1000", "stop_loss": "1.0990", "take_profit": "1.1020"}
    thin = agent.evaluate_signal("EUR/USD", "BUY", D("0.8"), figures)
    assert thin.approved and thin.probability == D("0.3333") and thin.edge_per_usd <= 0
    for _ in range(60):
        agent.update_signal_result("EUR/USD", "BUY", False, prior=D(1) / D(3))
    after = ForexAgent().evaluate_signal("EUR/USD", "BUY", D("0.8"), figures)
    # no other signal of the kind: the signal's bias (0 − 20 + 30 × 0) / (60 + 30) = −0.2222
    assert after.probability == D("0.1111")  # 1/3 − 2/9 = 1/9, at 2 : 1 a loss of 2/3 R per trade
    assert not after.approved and after.reasons == ["NEGATIVE_EXPECTED_PNL"]


@pytest.mark.django_db(transaction=True)
def test_concurrent_outcomes_are_all_counted():
    agent = ForexAgent()
    barrier = threading.Barrier(8)

    def worker():
        close_old_connections()
        try:
            barrier.wait(10)
            for _ in range(5):
                agent.update_signal_result("EUR/USD", "BUY", True)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert AgentState.objects.get(agent="forex", key="EUR/USD:BUY").wins == 40
