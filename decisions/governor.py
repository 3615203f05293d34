"""The governor: the last word on an opportunity, after the agent and the risk manager.

`make_decision` takes plain values and answers `execute`, `display` or `skip` with
machine-readable reasons, in this order:
    KILL_SWITCH, KIND_DISABLED, PAUSED          the operator's controls (PAUSED: a pause of its pair or
                                                route is in force, `pause`: which one, `decisions.pauses`)
    NO_QUOTE, STALE_DATA                        data freshness at decision time (never a warning): stale
                                                when `data_age_ms` (the oldest price's age past its
                                                cadence allowance, `pipeline.data_age_ms`: a bar is
                                                current until the next is due) exceeds the grace
                                                `max_age_ms`
    AGENT_SKIP, RISK_BLOCKED                    the earlier layers (their reasons follow)
    NOT_TOP_N                                   only the top N of a scan (3 arbitrage, 2 forex, 1 binary)
    DUPLICATE_EXPOSURE, MAX_OPEN_POSITIONS      the same route or pair already open; too many open
  → display with AUTO_THRESHOLDS when the kind's auto-execute thresholds are not all met,
    or DISPLAY_ONLY when auto-execute is off; otherwise execute.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

EXECUTE, DISPLAY, SKIP = "execute", "display", "skip"


@dataclass
class GovernorVerdict:
    verdict: str
    reasons: list[str] = field(default_factory=list)
    figures: dict = field(default_factory=dict)


def unmet_auto_thresholds(kind: str, figures: dict, risk_score: Decimal, thresholds) -> list[str]:
    """Which auto-execute thresholds of the kind this opportunity misses (strictly above/below, as documented)."""
    def number(name):
        value = figures.get(name)
        return None if value is None else Decimal(str(value))

    misses = []
    if kind == "arbitrage":
        if not (number("net_pct") or 0) > thresholds.auto_min_net_pct:
            misses.append("net_pct")
        profit = number("expected_profit_usd")
        if profit is None or not profit > thresholds.auto_min_profit_usd:
            misses.append("expected_profit_usd")
        if not risk_score < thresholds.auto_max_risk:
            misses.append("risk_score")
    elif kind == "forex":
        if not (number("confidence") or 0) > thresholds.auto_min_confidence:
            misses.append("confidence")
        if not (number("risk_reward") or 0) > thresholds.auto_min_risk_reward:
            misses.append("risk_reward")
    elif kind == "binary":
        if int(figures.get("expiry_s", 0)) != thresholds.auto_expiry_s:
            misses.append("expiry_s")
        if not (number("probability") or 0) > thresholds.auto_min_probability:
            misses.append("probability")
    return misses


def make_decision(opportunity, agent_verdict, risk_verdict, *, controls, thresholds, data_age_ms: int | None,
                  max_age_ms: int, open_routes: set[str], open_positions: int, max_open_positions: int,
                  pause: dict | None = None) -> GovernorVerdict:
    kind = opportunity.kind
    figures = {"data_age_ms": data_age_ms, "max_age_ms": max_age_ms, "rank": opportunity.rank, "top_n": thresholds.top_n,
               "open_positions": open_positions, "max_open_positions": max_open_positions, "mode": controls.mode}
    if controls.kill_switch:
        return GovernorVerdict(SKIP, ["KILL_SWITCH"], figures)
    if not getattr(controls, f"{kind}_enabled"):
        return GovernorVerdict(SKIP, ["KIND_DISABLED"], figures)
    if pause is not None:
        return GovernorVerdict(SKIP, ["PAUSED"], {**figures, "pause": pause})
    if data_age_ms is None:
        return GovernorVerdict(SKIP, ["NO_QUOTE"], figures)
    if data_age_ms > max_age_ms:
        return GovernorVerdict(SKIP, ["STALE_DATA"], figures)
    if not agent_verdict.approved:
        return GovernorVerdict(SKIP, ["AGENT_SKIP", *agent_verdict.reasons], figures)
    if not risk_verdict.approved:
        return GovernorVerdict(SKIP, ["RISK_BLOCKED", *risk_verdict.reasons], figures)
    if opportunity.rank > thresholds.top_n:
        return GovernorVerdict(SKIP, ["NOT_TOP_N"], figures)
    if opportunity.route in open_routes:
        return GovernorVerdict(SKIP, ["DUPLICATE_EXPOSURE"], figures)
    if open_positions >= max_open_positions:
        return GovernorVerdict(SKIP, ["MAX_OPEN_POSITIONS"], figures)
    misses = unmet_auto_thresholds(kind, opportunity.figures, opportunity.risk_score, thresholds)
    figures["auto_thresholds_missed"] = misses
    if misses:
        return GovernorVerdict(DISPLAY, ["AUTO_THRESHOLDS"], figures)
    if not controls.auto_execute:
        return GovernorVerdict(DISPLAY, ["DISPLAY_ONLY"], figures)
    return GovernorVerdict(EXECUTE, [], figures)
