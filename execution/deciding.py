"""Deciding one opportunity and booking what is approved: the one transaction where the
policy (agent, risk manager, governor: `decisions/`) meets the paper book.

What needs no lock is read first (controls, thresholds, the portfolio's exposure, the
agent's learned state: it only ever grows by increments, so an older read is merely
older). Then one transaction locks the risk rows, lets the risk manager approve
(reserving the day's trade slot only when the governor would execute), lets the governor
have the last word, stores the three `Decision` rows and, when asked to execute, plans
the fill and books it (`booking.book`) before it commits. The unique (opportunity, layer)
pair makes a decision idempotent, the unique trade per opportunity an execution.

On PostgreSQL the reads before the lock are one statement (`snapshot`), the risk rows are
locked in one, and every write of the transaction goes in one (`trifecta_site.sql.Writes`):
the round trips, not the SQL, were the cost. SQLite runs the same steps through the ORM.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.utils import timezone

from decisions.agents import AgentVerdict
from decisions.governor import DISPLAY, EXECUTE, SKIP, make_decision
from decisions.models import Controls, Decision, RiskLimits
from decisions.pauses import active_pauses, matching_pause
from decisions.pipeline import (THRESHOLD_ROWS, agent_keys, as_stored_size, data_age_ms, decision_event, edge_per_usd,
                                evaluate_agent, max_loss_per_usd, proposed_size_usd)
from decisions.risk import RiskVerdict, assess_trade, locked_rows, risk_day
from scanners.feeds.base import Feed, NotYetObserved
from scanners.models import Opportunity
from trifecta_site import events, sql
from trifecta_site.clock import ms_to_datetime
from trifecta_site.models import configuration_version_read, one_configuration_reading

from .booking import TradeRisk, book
from .models import ExecutionSettings, Portfolio, Trade
from .planning import plan_execution
from .portfolio import current_portfolio
from .snapshot import read_before_deciding

ZERO, ONE = Decimal(0), Decimal(1)


@dataclass
class Outcome:
    """The governor's verdict on an opportunity, and whether this call stored it."""

    verdict: str
    decisions: list[Decision]
    created: bool
    trade: Trade | None = None  # the execution booked with the decision (`decide_opportunity(execute=True)`)


def decide_opportunity(*, opportunity_id: int, feed: Feed, execute: bool = False) -> Outcome:
    """Run the three layers on one opportunity and store their verdicts, once.

    With `execute`, an opportunity the governor approves is filled and booked in the same
    transaction when the feed has reached its fill time, and `Outcome.trade` is its trade;
    else the caller executes it later (`execute_opportunity`)."""
    opportunity = Opportunity.objects.annotate(configuration_version=configuration_version_read()).filter(
        pk=opportunity_id).first()  # the configuration's version in the same round trip
    if opportunity is None:
        raise Opportunity.DoesNotExist(f"opportunity {opportunity_id} does not exist")
    if opportunity.status != Opportunity.DETECTED:  # decided before (the unique rows below catch a race)
        return _stored_outcome(opportunity_id)
    now = feed.now()
    with one_configuration_reading(version=opportunity.configuration_version):
        controls, limits = Controls.get_solo(), RiskLimits.get_solo()
        thresholds = THRESHOLD_ROWS[opportunity.kind].get_solo()
        settings = ExecutionSettings.get_solo()
        pause = matching_pause(opportunity, active_pauses(), at=timezone.now())  # the operator's wall clock
    agent_class, keys = agent_keys(opportunity)
    learned = agent_class()
    book = read_before_deciding(opportunity, learned, keys)
    portfolio, value, open_routes, open_count = book.portfolio, book.value, book.open_routes, book.open_count
    governor_inputs = dict(controls=controls, thresholds=thresholds, data_age_ms=data_age_ms(opportunity, feed, now),
                           max_age_ms=settings.max_quote_age_ms, open_routes=open_routes, open_positions=open_count,
                           max_open_positions=settings.max_open_positions,
                           pause=None if pause is None else pause.as_figures())
    at = ms_to_datetime(now)
    agent = evaluate_agent(opportunity, learned, horizon_ms=settings.max_holding_minutes * 60_000)
    size = proposed_size_usd(opportunity, agent, feed=feed, settings=settings, limits=limits, value=value)
    if size is None:
        agent.approved, agent.reasons, size = False, [*agent.reasons, "NO_USD_RATE"], ZERO
    loss_per_usd = max_loss_per_usd(opportunity, feed=feed, adverse_move_bps=settings.arbitrage_adverse_move_bps)
    edge = edge_per_usd(opportunity, agent, feed=feed)
    exposure = book.asset_exposure
    would = make_decision(opportunity, agent, RiskVerdict(True, "LOW", []), **governor_inputs)
    try:  # configuration read while deciding (the receivers of the rows' saves too) is of the version read above
        with one_configuration_reading(version=opportunity.configuration_version), transaction.atomic():
            risk_rows = locked_rows(risk_day(at, limits))
            writes = sql.Writes() if sql.hand_written() else None  # PostgreSQL: every write below in one statement
            risk = assess_trade(size, value, kind=opportunity.kind, now=at, reserve=would.verdict == EXECUTE,
                                limits=limits, locked=risk_rows, loss_per_usd=loss_per_usd, asset_exposure=exposure,
                                writes=writes)
            governor = make_decision(opportunity, agent, risk, **governor_inputs)
            rows = _decision_rows(opportunity, agent, risk, governor, size, value=value, at=at, now=now, edge=edge,
                                  loss_per_usd=loss_per_usd)
            updates = _opportunity_updates(opportunity, agent, rows, governor)

            def announce():
                event = {"opportunity": opportunity.pk, "kind": opportunity.kind, "symbol": opportunity.symbol,
                         "verdict": governor.verdict, "layers": [decision_event(row) for row in rows]}
                transaction.on_commit(lambda: events.publish("decision", event), robust=True)

            if writes is None:
                Decision.objects.bulk_create(rows)
                Opportunity.objects.filter(pk=opportunity.pk).update(**updates)
                announce()
            else:
                writes.insert(rows)
                writes.update(Opportunity, opportunity.pk, updates)
                writes.then(announce)  # the event names the rows' ids
            trade = None
            if execute and governor.verdict == EXECUTE:
                trade = _book_now(opportunity, feed=feed, settings=settings, limits=limits, portfolio=portfolio,
                                  decided=rows[-1], probability=agent.probability, decided_ts=now, risk_rows=risk_rows,
                                  writes=writes)
            if writes is not None:
                writes.send()
    except IntegrityError:
        return _stored_outcome(opportunity_id)
    return Outcome(governor.verdict, rows, True, trade)


def _opportunity_updates(opportunity: Opportunity, agent: AgentVerdict, rows: list[Decision], governor) -> dict:
    """What the decision writes on its opportunity: its status (a trade booked with it sets
    `executed` afterwards) and, for forex and binaries, the calibrated figures."""
    updates = {"status": Opportunity.REJECTED if governor.verdict == SKIP else Opportunity.DECIDED}
    if opportunity.kind != "arbitrage" and agent.probability is not None:
        updates.update(probability=agent.probability, expected_profit_usd=rows[1].expected_pnl_usd
                       if rows[1].expected_pnl_usd is not None else rows[0].expected_pnl_usd)
        if "prior_probability" in agent.figures:  # what its outcome is learned against
            updates["figures"] = {**opportunity.figures, "prior_probability": agent.figures["prior_probability"]}
    return updates


def _decision_rows(opportunity, agent: AgentVerdict, risk: RiskVerdict, governor, size: Decimal, *, value: Decimal, at,
                   now: int, edge: Decimal | None, loss_per_usd: Decimal) -> list[Decision]:
    """The three verdicts, each with the size it saw or approved, its worst case and expected P&L there."""
    common = dict(opportunity=opportunity, decided_at=at, market_ts=now, probability=agent.probability)

    def at_size(amount):
        if amount is None:
            return dict(size_usd=None)
        return dict(size_usd=amount, max_loss_usd=amount * loss_per_usd,
                    expected_pnl_usd=None if edge is None else amount * edge)

    executed = risk.size_usd if governor.verdict == EXECUTE else None
    return [
        Decision(layer=Decision.AGENT, verdict="approve" if agent.approved else "skip", reasons=agent.reasons,
                 figures=agent.figures, score=agent.score, **at_size(size), **common),
        Decision(layer=Decision.RISK, verdict="approved" if risk.approved else "blocked", reasons=risk.reasons,
                 figures={"checks": risk.checks, "day": risk.day, "size_multiplier": str(risk.size_multiplier),
                          "portfolio_value": str(value), "sizing": risk.sizing},
                 level=risk.level, **at_size(risk.size_usd), **common),
        Decision(layer=Decision.GOVERNOR, verdict=governor.verdict, reasons=governor.reasons, figures=governor.figures,
                 **at_size(executed), **common),
    ]


def _book_now(opportunity: Opportunity, *, feed: Feed, settings, limits, portfolio: Portfolio, decided: Decision,
              probability, decided_ts: int, risk_rows, writes: sql.Writes | None) -> Trade | None:
    """The approved opportunity's execution, booked in the deciding transaction; None when the
    feed has not reached its fill time yet (the `execute` task waits for it)."""
    try:
        plan = plan_execution(opportunity, feed=feed, settings=settings, size_usd=as_stored_size(decided.size_usd),
                              decided_ts=decided_ts)
    except NotYetObserved:
        return None
    return book(plan, portfolio=portfolio, settings=settings, limits=limits, risk_rows=risk_rows,
                risk=_trade_risk(decided, probability), writes=writes)


def _trade_risk(decided: Decision, probability) -> TradeRisk:
    return TradeRisk(max_loss_usd=decided.max_loss_usd, expected_pnl_usd=decided.expected_pnl_usd,
                     probability=probability, approved_at=decided.decided_at)


def execute_opportunity(*, opportunity_id: int, feed: Feed, size_usd: Decimal | None = None,
                        decided_ts: int | None = None) -> Trade:
    """Fill and book one approved opportunity, at most once whatever happens around it.

    Raises `NotYetObserved` when the fill time lies after the feed's clock (the task
    retries then). Size and decision time come from the stored decisions."""
    opportunity = Opportunity.objects.filter(pk=opportunity_id).first()
    if opportunity is None:
        raise Opportunity.DoesNotExist(f"opportunity {opportunity_id} does not exist")
    if opportunity.status in (Opportunity.EXECUTED, Opportunity.REJECTED):  # booked before, or never to be
        existing = Trade.objects.filter(opportunity_id=opportunity_id).first()
        if existing is not None:
            return existing
    layers = {d.layer: d for d in Decision.objects.filter(opportunity_id=opportunity_id)}
    governor = layers.get(Decision.GOVERNOR)
    if size_usd is None or decided_ts is None:
        if governor is None or governor.verdict != EXECUTE:
            raise ValueError(f"opportunity {opportunity_id} is not approved for execution")
        size_usd, decided_ts = layers[Decision.RISK].size_usd, governor.market_ts
    with one_configuration_reading():
        settings, limits = ExecutionSettings.get_solo(), RiskLimits.get_solo()
    portfolio = current_portfolio()
    plan = plan_execution(opportunity, feed=feed, settings=settings, size_usd=size_usd, decided_ts=decided_ts)
    risk = _trade_risk(governor, layers[Decision.AGENT].probability) if governor is not None else TradeRisk()
    try:
        with transaction.atomic():
            writes = sql.Writes() if sql.hand_written() else None
            trade = book(plan, portfolio=portfolio, settings=settings, limits=limits, risk=risk, writes=writes)
            if writes is not None:
                writes.send()
            return trade
    except IntegrityError:
        existing = Trade.objects.filter(opportunity_id=opportunity_id).first()
        if existing is None:
            raise
        return existing


def _stored_outcome(opportunity_id: int) -> Outcome:
    rows = list(Decision.objects.filter(opportunity_id=opportunity_id))
    governor = next((d for d in rows if d.layer == Decision.GOVERNOR), None)
    trade = Trade.objects.filter(opportunity_id=opportunity_id).first()
    return Outcome(governor.verdict if governor else DISPLAY, rows, False, trade)
