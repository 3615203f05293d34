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
- `BinaryAgent` scores a binary by its calibrated probability of finishing in the money.

Forex and binary opportunities also carry a calibrated probability of success (forex: the
target before the stop; binary: in the money) and the expected P&L per USD it implies
(forex: p × target distance − (1 − p) × stop distance, as fractions of the entry; binary:
p × payout − (1 − p)). The probability starts from a prior that claims no edge (forex: a
driftless market's odds of reaching the target before the stop within the longest holding
time, `first_passage`; binary: a coin's) and is corrected by the bias realized
outcomes show against their priors: per signal (pair and side; underlying, side and
expiry), shrunk towards the bias of the kind's other signals, itself shrunk towards none,
with `SHRINK` and `KIND_SHRINK` outcomes of prior weight. Once the kind has `MIN_EVIDENCE` outcomes the
agent skips what has no positive expected P&L (`NEGATIVE_EXPECTED_PNL`).
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
ZERO, ONE, HALF = Decimal(0), Decimal(1), Decimal("0.5")
SHRINK = {"forex": 30, "binary": 30}  # independent outcomes of prior weight behind a signal's bias (towards its kind's)
KIND_SHRINK = {"forex": 30, "binary": 30}  # behind a kind's bias (towards none). Outcomes come in runs (a
# trend hits every forex target for an hour, then none for a day; a quiet night's 60 s options go one way
# for twenty minutes, then the other): a few windows say little about the next
MIN_EVIDENCE = 30  # outcomes of a kind before the agent vetoes on expected P&L
P_FLOOR, P_CEILING = Decimal("0.01"), Decimal("0.99")
GLOBAL = "*"  # the key of what a kind's agent learned over all its signals


@dataclass
class AgentVerdict:
    approved: bool
    score: Decimal
    size_multiplier: Decimal
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)
    probability: Decimal | None = None  # calibrated probability of success (forex, binary)
    edge_per_usd: Decimal | None = None  # expected P&L per USD of size, costs included


def calibrated(prior: Decimal, state: AgentState, overall: AgentState, *, kind: str) -> Decimal:
    """`prior` corrected by the bias the outcomes showed against their priors (wins − Σ priors):
    the signal's own, shrunk towards the bias of the kind's other signals, itself shrunk towards
    none. The kind's bias leaves the signal's own outcomes out: counted in both, a run of wins on
    the only signal of a kind moved its probability twice as fast as the evidence says."""
    shrink, kind_shrink = SHRINK[kind], KIND_SHRINK[kind]
    own_n, own_bias = state.wins + state.losses, state.wins - state.expected_sum
    rest_n = overall.wins + overall.losses - own_n
    rest_bias = (overall.wins - overall.expected_sum - own_bias) / (rest_n + kind_shrink)
    bias = (own_bias + shrink * rest_bias) / (own_n + shrink)
    return min(P_CEILING, max(P_FLOOR, prior + bias)).quantize(Decimal("0.0001"))


def forex_prior(figures: dict, horizon_ms: int | None = None) -> tuple[Decimal, Decimal, Decimal] | None:
    """A forex signal's no-edge probability of its target before its stop (within `horizon_ms`,
    the longest a position is held, where the signal's ATR and bar length say how far prices
    wander in that time; from the exit side's price), and its win and loss per USD of entry
    (None without usable levels).
    A prior stored with the opportunity when it was decided (`prior_probability`) wins."""
    try:
        entry, stop, target = (Decimal(str(figures[name])) for name in ("entry", "stop_loss", "take_profit"))
    except (KeyError, ArithmeticError, ValueError):
        return None
    win, loss = abs(target - entry), abs(entry - stop)
    if not entry or not win or not loss:
        return None
    stored = figures.get("prior_probability")
    if stored is not None:
        return Decimal(str(stored)), win / entry, loss / entry
    # The entry is on the fill side, the exits are judged on the other: that side's price starts
    # a spread further from the target and a spread nearer the stop.
    spread = min(Decimal(str(figures.get("spread") or 0)), loss / 2)
    return first_passage(win + spread, loss - spread, figures, horizon_ms), win / entry, loss / entry


def first_passage(win: Decimal, loss: Decimal, figures: dict, horizon_ms: int | None) -> Decimal:
    """P(a driftless price reaches +win before −loss, and within the horizon): loss / (win + loss)
    without a horizon; with one, Brownian motion on (−loss, +win) with the bar's volatility
    (ATR ≈ 1.6 σ per bar), by its eigenfunction series. Floats: scanning-style math."""
    distance = float(win + loss)
    plain = float(loss) / distance
    atr, bar_ms = figures.get("atr") or (figures.get("indicators") or {}).get("atr"), figures.get("bar_ms")
    if not horizon_ms or not atr or not bar_ms or float(atr) <= 0:
        return Decimal(str(round(plain, 4)))
    variance = (float(atr) / 1.6) ** 2 * horizon_ms / int(bar_ms)
    series = sum((2 * (-1) ** (k + 1) / (k * math.pi)) * math.sin(k * math.pi * plain)
                 * math.exp(-(k * math.pi / distance) ** 2 * variance / 2) for k in range(1, 400))
    return Decimal(str(round(min(plain, max(0.0, plain - series)), 4)))


def binary_prior(figures: dict) -> Decimal:
    """A binary's no-edge probability: a coin's. The scanner's stated probability is a signal's
    strength (its thresholds apply to it); what it is worth is learned from outcomes."""
    return HALF


def posterior_mean(wins: int, losses: int) -> Decimal:
    return Decimal(wins + PRIOR) / Decimal(wins + losses + 2 * PRIOR)


def lower_bound(wins: int, losses: int) -> float:
    """10th percentile of the posterior by its normal approximation: ranks with the sample size in mind."""
    a, b = wins + PRIOR, losses + PRIOR
    mean = a / (a + b)
    return mean - 1.2816 * math.sqrt(a * b / ((a + b) ** 2 * (a + b + 1)))


class Agent:
    name = ""

    def __init__(self, known: dict[str, AgentState] | None = None, *, writes=None):
        self.known = known or {}  # states the caller read already, by key
        self.writes = writes  # `trifecta_site.sql.Writes`: learning goes with the caller's other writes

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
        if self.writes is not None:
            self.writes.increment(AgentState, {"agent": self.name, "key": key}, counts, {"updated_at": timezone.now()})
            self.known.pop(key, None)
            return
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

    def evaluate_signal(self, pair: str, signal: str, confidence: Decimal, figures: dict | None = None,
                        horizon_ms: int | None = None) -> AgentVerdict:
        confidence = Decimal(confidence)
        if signal == "HOLD":
            return AgentVerdict(False, Decimal(0), Decimal(0), ["HOLD"])
        if confidence < Decimal("0.6"):
            return AgentVerdict(False, Decimal(0), Decimal(0), ["LOW_CONFIDENCE"], {"confidence": str(confidence)})
        signal_key, pair_key = self.keys(pair, signal)
        states = self.states(signal_key, pair_key, GLOBAL)
        signal_state, pair_state, overall = states[signal_key], states[pair_key], states[GLOBAL]
        accuracy = posterior_mean(signal_state.wins, signal_state.losses)
        performance = posterior_mean(pair_state.wins, pair_state.losses)
        raw = Decimal("0.5") * confidence + Decimal("0.3") * accuracy + Decimal("0.2") * performance
        score = min(ONE, max(Decimal("0.4"), raw)).quantize(Decimal("0.0001"))
        multiplier = Decimal("1.0") if score >= Decimal("0.8") else Decimal("0.75") if score >= Decimal("0.6") else Decimal("0.5")
        verdict = AgentVerdict(True, score, multiplier, [], {
            "confidence": str(confidence), "signal_accuracy": str(accuracy.quantize(Decimal("0.0001"))),
            "pair_performance": str(performance.quantize(Decimal("0.0001"))),
            "signal_trades": signal_state.wins + signal_state.losses,
        })
        levels = forex_prior(figures or {}, horizon_ms)
        if levels is not None:
            prior, win, loss = levels
            p = calibrated(prior, signal_state, overall, kind="forex")
            _with_expectation(verdict, p, p * win - (ONE - p) * loss, prior=prior, evidence=overall)
        return verdict

    @staticmethod
    def keys(pair: str, signal: str) -> tuple[str, str]:
        """What is learned for this signal on this pair, and for the pair whatever the signal."""
        return f"{pair}:{signal}", f"{pair}:*"

    def update_signal_result(self, pair: str, signal: str, profitable: bool, prior: Decimal = ZERO) -> None:
        for key in (*self.keys(pair, signal), GLOBAL):
            self.learn(key, win=profitable, expected=prior)

    def get_best_pairs(self, top_n: int = 5) -> list[tuple[str, float]]:
        """Pairs ranked by the lower bound of their realized accuracy (a long record beats a lucky one)."""
        ranked = [
            (state.key[:-2], lower_bound(state.wins, state.losses))
            for state in AgentState.objects.filter(agent=self.name, key__endswith=":*").exclude(key=GLOBAL)
        ]
        return sorted(ranked, key=lambda item: item[1], reverse=True)[:top_n]


class BinaryAgent(Agent):
    name = AgentState.BINARY

    def evaluate(self, underlying: str, direction: str, expiry_s: int, probability: Decimal,
                 payout: Decimal | None = None) -> AgentVerdict:
        key = self.key(underlying, direction, expiry_s)
        states = self.states(key, GLOBAL)
        state, overall = states[key], states[GLOBAL]
        prior = binary_prior({"probability": probability})
        p = calibrated(prior, state, overall, kind="binary")
        verdict = AgentVerdict(True, p, ONE, [], {
            "predicted": str(probability), "prior": str(prior), "hits": state.wins, "settled": state.wins + state.losses,
        }, probability=p)
        if payout is not None:
            _with_expectation(verdict, p, p * Decimal(payout) - (ONE - p), prior=prior, evidence=overall)
        return verdict

    @staticmethod
    def key(underlying: str, direction: str, expiry_s: int) -> str:
        return f"{underlying}:{direction}:{expiry_s}"

    def learn_expiry(self, underlying: str, direction: str, expiry_s: int, *, predicted: Decimal, won: bool) -> None:
        """One settled binary (a tie or a void teaches nothing), against its prior."""
        prior = binary_prior({"probability": predicted})
        for key in (self.key(underlying, direction, expiry_s), GLOBAL):
            self.learn(key, win=won, expected=prior)


def _with_expectation(verdict: AgentVerdict, p: Decimal, edge: Decimal, *, prior: Decimal, evidence: AgentState) -> None:
    """Attach the calibrated probability and expected P&L per USD; veto a non-positive one once
    the kind has enough outcomes behind its calibration."""
    outcomes = evidence.wins + evidence.losses
    verdict.probability, verdict.edge_per_usd = p, edge.quantize(Decimal("0.000001"))
    verdict.figures.update(probability=str(p), prior_probability=str(prior.quantize(Decimal("0.0001"))),
                           expected_pnl_per_usd=str(verdict.edge_per_usd), kind_outcomes=outcomes)
    if outcomes >= MIN_EVIDENCE and edge <= 0:
        verdict.approved = False
        verdict.reasons = [*verdict.reasons, "NEGATIVE_EXPECTED_PNL"]


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


def learn(outcome: RealizedOutcome, *, writes=None) -> None:
    """The agent of the outcome's kind learns from it (call it in the transaction that books the close;
    `writes`: held for the caller's one statement, `trifecta_site.sql.Writes`)."""
    if outcome.kind == "arbitrage":
        ArbitrageAgent(writes=writes).learn_route(outcome.route, realized=outcome.realized_pnl, expected=outcome.expected_pnl or ZERO)
    elif outcome.kind == "forex":
        levels = forex_prior(outcome.figures)
        won = outcome.realized_pnl > 0 if outcome.won is None else outcome.won  # the target before the stop
        ForexAgent(writes=writes).update_signal_result(outcome.symbol, outcome.direction, won, prior=levels[0] if levels else ZERO)
    elif outcome.kind == "binary" and outcome.won is not None:
        figures = outcome.figures
        BinaryAgent(writes=writes).learn_expiry(outcome.symbol, outcome.direction, int(figures["expiry_s"]),
                                   predicted=Decimal(figures["probability"]), won=outcome.won)
