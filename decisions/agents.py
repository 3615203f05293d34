"""Learning agents: each scores opportunities from what really happened before.

They learn only from realized outcomes (a closed position, an expired binary), never from
opening a trade, and keep their state in the database (`AgentState`), shared by every
worker and surviving restarts. Every estimate is a Beta-Bernoulli posterior with a
Beta(2, 2) prior: one trade moves it a little, a hundred move it a lot.

- `ArbitrageAgent` learns per route whether its trades realized a profit (fill success)
  and how realized profit compared with expected; score = posterior mean of success ×
  min(1, realized / expected with one expected trade of prior weight); approve at ≥ 0.3;
  size multiplier = the score clipped to [0.25, 1].
- `ForexAgent` learns per pair and signal whether positions were profitable, and per pair
  overall. score = 0.5 × confidence + 0.3 × accuracy(pair, signal) + 0.2 × accuracy(pair),
  clipped to [0.4, 1.0]; multiplier 1.0 from 0.8, 0.75 from 0.6, else 0.5. HOLD and
  confidence under 60 % are skipped.
- `BinaryAgent` learns per underlying, direction and expiry the realized hit rate against
  the predicted probability; the estimate is multiplied by (hits + 2) / (Σ predicted + 2),
  capped at 1: over-confident estimates are discounted, never inflated.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from .models import AgentState

PRIOR = 2
ZERO, ONE = Decimal(0), Decimal(1)


@dataclass
class AgentVerdict:
    approved: bool
    score: Decimal
    size_multiplier: Decimal
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def posterior_mean(wins: int, losses: int) -> Decimal:
    return Decimal(wins + PRIOR) / Decimal(wins + losses + 2 * PRIOR)


def lower_bound(wins: int, losses: int) -> float:
    """10th percentile of the posterior by its normal approximation: ranks with the sample size in mind."""
    a, b = wins + PRIOR, losses + PRIOR
    mean = a / (a + b)
    return mean - 1.2816 * math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


class Agent:
    name = ""

    def __init__(self, known: dict[str, AgentState] | None = None):
        self.known = known or {}  # states the caller read already, by key

    def state(self, key: str) -> AgentState:
        return self.states(key)[key]

    def states(self, *keys: str) -> dict[str, AgentState]:
        """The learned state of each key (a fresh prior where nothing was learned yet), in one query."""
        missing = [key for key in keys if key not in self.known]
        if missing:
            found = {state.key: state for state in AgentState.objects.filter(agent=self.name, key__in=missing)}
            self.known.update({key: found.get(key) or AgentState(agent=self.name, key=key) for key in missing})
        return {key: self.known[key] for key in keys}

    def learn(self, key: str, *, win: bool, expected: Decimal = ZERO, realized: Decimal = ZERO) -> None:
        """One realized outcome added to the key's counts as increments in the database: concurrent
        workers never lose one."""
        counts = {"wins": 1 if win else 0, "losses": 0 if win else 1, "expected_sum": expected, "realized_sum": realized}
        increments = {name: F(name) + value for name, value in counts.items()}
        rows = AgentState.objects.filter(agent=self.name, key=key)
        if rows.update(**increments, updated_at=timezone.now()):
            return
        try:
            with transaction.atomic():
                AgentState.objects.create(agent=self.name, key=key, updated_at=timezone.now(), **counts)
        except IntegrityError:  # another worker created it first
            rows.update(**increments, updated_at=timezone.now())
        self.known.pop(key, None)

    def reset(self) -> int:
        deleted, _ = AgentState.objects.filter(agent=self.name).delete()
        return deleted


class ArbitrageAgent(Agent):
    name = AgentState.ARBITRAGE

    def evaluate_opportunity(self, opportunity) -> AgentVerdict:
        state = self.state(opportunity.route)
        success = posterior_mean(state.wins, state.losses)
        expected = state.expected_sum + (opportunity.expected_profit or Decimal(0))
        realized = state.realized_sum + (opportunity.expected_profit or Decimal(0))
        ratio = min(ONE, max(Decimal(0), realized / expected)) if expected > 0 else ONE
        score = (success * ratio).quantize(Decimal("0.0001"))
        approved = score >= Decimal("0.3")
        return AgentVerdict(
            approved, score, min(ONE, max(Decimal("0.25"), score)).quantize(Decimal("0.01")),
            [] if approved else ["AGENT_LOW_SCORE"],
            {"route": opportunity.route, "success": str(success.quantize(Decimal("0.0001"))),
             "realized_vs_expected": str(ratio.quantize(Decimal("0.0001"))), "trades": state.wins + state.losses},
        )

    def learn_route(self, route: str, *, realized: Decimal, expected: Decimal) -> None:
        self.learn(route, win=realized > 0, expected=expected, realized=realized)


class ForexAgent(Agent):
    name = AgentState.FOREX

    def evaluate_signal(self, pair: str, signal: str, confidence: Decimal) -> AgentVerdict:
        confidence = Decimal(confidence)
        if signal == "HOLD":
            return AgentVerdict(False, Decimal(0), Decimal(0), ["HOLD"])
        if confidence < Decimal("0.6"):
            return AgentVerdict(False, Decimal(0), Decimal(0), ["LOW_CONFIDENCE"], {"confidence": str(confidence)})
        signal_key, pair_key = self.keys(pair, signal)
        states = self.states(signal_key, pair_key)
        signal_state, pair_state = states[signal_key], states[pair_key]
        accuracy = posterior_mean(signal_state.wins, signal_state.losses)
        performance = posterior_mean(pair_state.wins, pair_state.losses)
        raw = Decimal("0.5") * confidence + Decimal("0.3") * accuracy + Decimal("0.2") * performance
        score = min(ONE, max(Decimal("0.4"), raw)).quantize(Decimal("0.0001"))
        multiplier = Decimal("1.0") if score >= Decimal("0.8") else Decimal("0.75") if score >= Decimal("0.6") else Decimal("0.5")
        return AgentVerdict(True, score, multiplier, [], {
            "confidence": str(confidence), "signal_accuracy": str(accuracy.quantize(Decimal("0.0001"))),
            "pair_performance": str(performance.quantize(Decimal("0.0001"))),
            "signal_trades": signal_state.wins + signal_state.losses,
        })

    @staticmethod
    def keys(pair: str, signal: str) -> tuple[str, str]:
        """What is learned for this signal on this pair, and for the pair whatever the signal."""
        return f"{pair}:{signal}", f"{pair}:*"

    def update_signal_result(self, pair: str, signal: str, profitable: bool) -> None:
        for key in self.keys(pair, signal):
            self.learn(key, win=profitable)

    def get_best_pairs(self, top_n: int = 5) -> list[tuple[str, float]]:
        """Pairs ranked by the lower bound of their realized accuracy (a long record beats a lucky one)."""
        ranked = [
            (state.key[:-2], lower_bound(state.wins, state.losses))
            for state in AgentState.objects.filter(agent=self.name, key__endswith=":*")
        ]
        return sorted(ranked, key=lambda item: item[1], reverse=True)[:top_n]


class BinaryAgent(Agent):
    name = AgentState.BINARY

    def evaluate(self, underlying: str, direction: str, expiry_s: int, probability: Decimal) -> AgentVerdict:
        state = self.state(self.key(underlying, direction, expiry_s))
        discount = min(ONE, Decimal(state.wins + PRIOR) / (state.expected_sum + PRIOR))
        adjusted = (Decimal(probability) * discount).quantize(Decimal("0.0001"))
        return AgentVerdict(True, adjusted, ONE, [], {
            "predicted": str(probability), "calibration_discount": str(discount.quantize(Decimal("0.0001"))),
            "hits": state.wins, "settled": state.wins + state.losses,
        })

    @staticmethod
    def key(underlying: str, direction: str, expiry_s: int) -> str:
        return f"{underlying}:{direction}:{expiry_s}"

    def learn_expiry(self, underlying: str, direction: str, expiry_s: int, *, predicted: Decimal, won: bool) -> None:
        self.learn(self.key(underlying, direction, expiry_s), win=won, expected=Decimal(predicted))


@dataclass(frozen=True)
class RealizedOutcome:
    """What a closed trade tells the agents: learning flows back to the policy as data."""

    kind: str
    route: str
    symbol: str
    direction: str
    realized_pnl: Decimal
    expected_pnl: Decimal | None = None
    won: bool | None = None  # binary: None for a tie or a void (nothing to learn)
    figures: dict = field(default_factory=dict)  # the opportunity's figures (a binary's expiry and probability)


def learn(outcome: RealizedOutcome) -> None:
    """The agent of the outcome's kind learns from it (call it in the transaction that books the close)."""
    if outcome.kind == "arbitrage":
        ArbitrageAgent().learn_route(outcome.route, realized=outcome.realized_pnl, expected=outcome.expected_pnl or ZERO)
    elif outcome.kind == "forex":
        ForexAgent().update_signal_result(outcome.symbol, outcome.direction, outcome.realized_pnl > 0)
    elif outcome.kind == "binary" and outcome.won is not None:
        figures = outcome.figures
        BinaryAgent().learn_expiry(outcome.symbol, outcome.direction, int(figures["expiry_s"]),
                                   predicted=Decimal(figures["probability"]), won=outcome.won)
