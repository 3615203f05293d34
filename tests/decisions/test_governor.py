"""The governor on plain values: every reason, in order, and the auto-execute thresholds."""
from decimal import Decimal
from types import SimpleNamespace

import pytest

from decisions.agents import AgentVerdict
from decisions.governor import make_decision
from decisions.risk import RiskVerdict
from scanners.arbitrage import ArbitrageThresholds
from scanners.binary import BinaryThresholds
from scanners.forex import ForexThresholds

D = Decimal
APPROVE = AgentVerdict(True, D("0.8"), D("1"))
LOW = RiskVerdict(True, "LOW", [])


def controls(**overrides):
    values = dict(kill_switch=False, auto_execute=True, arbitrage_enabled=True, forex_enabled=True, binary_enabled=True)
    values.update(overrides)
    mode = "HALTED" if values["kill_switch"] else "AUTO-EXECUTE" if values["auto_execute"] else "DISPLAY ONLY"
    return SimpleNamespace(mode=mode, **values)


def arbitrage(net="0.8", profit="60", risk="20", rank=1, route="xv:BTC/USD:a>b"):
    return SimpleNamespace(kind="arbitrage", rank=rank, route=route, risk_score=D(risk),
                           figures={"net_pct": net, "expected_profit_usd": profit})


def decide(opportunity=None, agent=APPROVE, risk=LOW, thresholds=ArbitrageThresholds(), age=100, **kwargs):
    options = dict(controls=controls(), data_age_ms=age, max_age_ms=5000, open_routes=set(), open_positions=0,
                   max_open_positions=10)
    options.update(kwargs)
    return make_decision(opportunity or arbitrage(), agent, risk, thresholds=thresholds, **options)


def test_an_opportunity_that_passes_everything_executes():
    verdict = decide()
    assert (verdict.verdict, verdict.reasons) == ("execute", [])


@pytest.mark.parametrize("overrides, reasons", [
    ({"controls": controls(kill_switch=True)}, ["KILL_SWITCH"]),
    ({"controls": controls(arbitrage_enabled=False)}, ["KIND_DISABLED"]),
    ({"pause": {"id": 1, "scope": "pair", "target": "BTC/USD", "until": None}, "age": None}, ["PAUSED"]),
    ({"age": None}, ["NO_QUOTE"]),
    ({"age": 5001}, ["STALE_DATA"]),
    ({"agent": AgentVerdict(False, D("0.1"), D("0"), ["AGENT_LOW_SCORE"])}, ["AGENT_SKIP", "AGENT_LOW_SCORE"]),
    ({"risk": RiskVerdict(False, "BLOCKED", ["TRADE_COUNT"])}, ["RISK_BLOCKED", "TRADE_COUNT"]),
    ({"opportunity": arbitrage(rank=4)}, ["NOT_TOP_N"]),
    ({"open_routes": {"xv:BTC/USD:a>b"}}, ["DUPLICATE_EXPOSURE"]),
    ({"open_positions": 10}, ["MAX_OPEN_POSITIONS"]),
])
def test_each_rule_skips_with_its_reason(overrides, reasons):
    verdict = decide(**overrides)
    assert (verdict.verdict, verdict.reasons) == ("skip", reasons)


def test_display_only_evaluates_but_never_executes():
    verdict = decide(controls=controls(auto_execute=False))
    assert (verdict.verdict, verdict.reasons) == ("display", ["DISPLAY_ONLY"])


@pytest.mark.parametrize("opportunity, missed", [
    (arbitrage(net="0.5"), ["net_pct"]),  # strictly above 0.5 %
    (arbitrage(profit="50"), ["expected_profit_usd"]),
    (arbitrage(profit=None), ["expected_profit_usd"]),
    (arbitrage(risk="30"), ["risk_score"]),
])
def test_arbitrage_auto_thresholds(opportunity, missed):
    verdict = decide(opportunity)
    assert verdict.verdict == "display" and verdict.figures["auto_thresholds_missed"] == missed


def test_forex_and_binary_auto_thresholds():
    forex = SimpleNamespace(kind="forex", rank=1, route="fx:fxcm:EUR/USD", risk_score=D("20"),
                            figures={"confidence": "0.75", "risk_reward": "2.000"})
    assert decide(forex, thresholds=ForexThresholds()).figures["auto_thresholds_missed"] == ["risk_reward"]
    binary = SimpleNamespace(kind="binary", rank=1, route="bin:v:BTC/USD:CALL:120", risk_score=D("20"),
                             figures={"probability": "0.80", "expiry_s": 120})
    assert decide(binary, thresholds=BinaryThresholds()).figures["auto_thresholds_missed"] == ["expiry_s"]
    binary.figures["expiry_s"] = 60
    assert decide(binary, thresholds=BinaryThresholds()).verdict == "execute"
