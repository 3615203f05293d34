"""Agents: Beta posteriors by hand, bounded learning, atomic updates under concurrency."""
import threading
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import close_old_connections, connection

from decisions.agents import ArbitrageAgent, BinaryAgent, ForexAgent, posterior_mean
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


def test_binary_agent_discounts_over_confidence_and_never_inflates():
    agent = BinaryAgent()
    for index in range(20):
        agent.learn_expiry("BTC/USD", "CALL", 60, predicted=D("0.8"), won=index % 2 == 0)  # 10 hits of 16 predicted
    verdict = agent.evaluate("BTC/USD", "CALL", 60, D("0.8"))
    assert verdict.figures["calibration_discount"] == str((D(12) / D(18)).quantize(D("0.0001")))
    assert verdict.score == (D("0.8") * D(12) / D(18)).quantize(D("0.0001"))
    for _ in range(20):
        agent.learn_expiry("ETH/USD", "PUT", 60, predicted=D("0.5"), won=True)
    assert agent.evaluate("ETH/USD", "PUT", 60, D("0.6")).score == D("0.6000")


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
