"""Deciding one opportunity: agent, then risk manager, then governor; every verdict stored.

Everything that needs no lock is computed first (data freshness, the governor's view of
controls, thresholds and open exposure, and for arbitrage the agent's score: what it learned
on the route comes with the opportunity); then one short transaction reads the risk rows
with their locks (and the agent's learned state, for the other kinds, which are scored
then), approves (reserving the day's trade slot only when the governor would execute),
lets the governor have the last word and stores the three `Decision` rows (one `decision`
event carries all three verdicts after commit). The unique (opportunity, layer) pair makes
it idempotent: a second decision of the same opportunity stores nothing and returns the first.

Round trips (PostgreSQL, `trifecta_site.statements`): the opportunity, what the agent
learned on its route (an arbitrage route is the state's key), the portfolio's exposure and
the configuration version in one; then the transaction: its BEGIN and the locked risk rows
(with the agent's state for forex and binary) in one, and one more from the locks to the
commit (the risk writes, the opportunity's status and the three verdicts: one statement,
`statements.together`, with the COMMIT).

A decision made to be executed (`execute=True`, the `decide` task and the replay desk)
books an approved opportunity in the same transaction where it can. When the governor
would execute the opportunity should the agent and the risk manager approve, the fill is
planned before the transaction (`execution.executors.draft_booking`), with a trade key this
process took in advance (`statements.next_id`; forex and binary read their agent's state
first, in a round trip of their own); the locking round trip also locks the balances the
trade moves; the trade's writes go with the decision's and its COMMIT. Three
round trips and one commit for an arbitrage opportunity decided and booked, instead of six
and two, the locks taken once and held for the risk check and the writes only (`make
bench-execute`).
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction

from scanners import models as scan_models
from trifecta_site.currency import USD_STABLECOINS
from scanners.feeds.base import Feed
from scanners.models import Opportunity
from trifecta_site import events
from trifecta_site import statements as sql
from trifecta_site.models import configuration_version_statement, one_configuration_reading, version_from

from .agents import Agent, AgentVerdict, ArbitrageAgent, BinaryAgent, ForexAgent
from .governor import DISPLAY, EXECUTE, SKIP, make_decision
from .models import Controls, Decision, RiskLimits
from .risk import RiskVerdict, assess_trade, locked_rows_from, locked_rows_statement, risk_day

ZERO, ONE, HUNDRED = Decimal(0), Decimal(1), Decimal(100)
SIZE_QUANTUM = Decimal(10) ** -Decision._meta.get_field("size_usd").decimal_places
THRESHOLD_ROWS = {"arbitrage": scan_models.ArbitrageSettings, "forex": scan_models.ForexSettings,
                  "binary": scan_models.BinarySettings}


@dataclass
class Outcome:
    """The governor's verdict on an opportunity, and whether this call stored it."""

    verdict: str
    decisions: list[Decision]
    created: bool
    trade: object = None  # the execution booked with the decision (`decide_opportunity(execute=True)`)


def agent_keys(opportunity: Opportunity) -> tuple[type[Agent], tuple[str, ...]]:
    """The agent of the opportunity's kind and the keys of what it learned that its verdict reads."""
    f = opportunity.figures
    if opportunity.kind == "arbitrage":
        return ArbitrageAgent, (opportunity.route,)
    if opportunity.kind == "forex":
        return ForexAgent, ForexAgent.keys(opportunity.symbol, f["signal"])
    return BinaryAgent, (BinaryAgent.key(opportunity.symbol, f["direction"], int(f["expiry_s"])),)


def evaluate_agent(opportunity: Opportunity, agent: Agent | None = None) -> AgentVerdict:
    """The agent's verdict (`agent`: one that knows the states already, see `agent_keys`)."""
    f = opportunity.figures
    agent = agent or agent_keys(opportunity)[0]()
    if opportunity.kind == "arbitrage":
        return agent.evaluate_opportunity(opportunity)
    if opportunity.kind == "forex":
        return agent.evaluate_signal(opportunity.symbol, f["signal"], Decimal(f["confidence"]))
    return agent.evaluate(opportunity.symbol, f["direction"], int(f["expiry_s"]), Decimal(f["probability"]))


def legs_of(opportunity: Opportunity) -> list[tuple[str, str]]:
    f = opportunity.figures
    if f.get("type") == "triangular":
        return [(f["venue"], leg["symbol"]) for leg in f["path"]]
    if "buy_venue" in f:
        return [(f["buy_venue"], f["symbol"]), (f["sell_venue"], f["symbol"])]
    return [(f["venue"], f["symbol"])]


def data_age_ms(opportunity: Opportunity, feed: Feed, now: int) -> int | None:
    """How far the oldest price behind the opportunity is past its allowance now (None: a leg has no price).

    A quote's allowance starts at its own time; a bar close's starts at the close (the
    bar period is allowed on top, as the scanners allow it).
    """
    worst = None
    for venue, symbol in legs_of(opportunity):
        quote, bar_ms = feed.mark(venue, symbol)
        if quote is None:
            return None
        age = now - quote.ts - bar_ms
        worst = age if worst is None else max(worst, age)
    return worst


def _usd_per_quote_unit(opportunity: Opportunity, feed: Feed) -> Decimal | None:
    f = opportunity.figures
    profit, profit_usd = f.get("expected_profit"), f.get("expected_profit_usd")
    if profit_usd is not None and profit and Decimal(profit):
        return Decimal(profit_usd) / Decimal(profit)
    currency = f.get("start_currency") or opportunity.symbol.split("/")[1].split(":")[0]
    if currency in USD_STABLECOINS or currency == "USD":
        return ONE
    from execution.portfolio import usd_rates

    return usd_rates(feed, {currency}).to_usd(ONE, currency)


def proposed_size_usd(opportunity: Opportunity, agent: AgentVerdict, *, feed: Feed, settings, limits: RiskLimits,
                      value: Decimal) -> Decimal | None:
    """The notional (stake for binaries) the desk would trade, in USD, before the risk manager's say."""
    f = opportunity.figures
    multiplier = agent.size_multiplier or ONE
    if opportunity.kind == "binary":
        return value * settings.binary_stake_pct / HUNDRED * multiplier
    rate = _usd_per_quote_unit(opportunity, feed)
    if rate is None:
        return None
    if opportunity.kind == "arbitrage":
        size = Decimal(f["size"])
        notional = size * rate if f.get("type") == "triangular" else size * Decimal(f["buy_price"]) * rate
        return min(notional, settings.arbitrage_max_notional_usd) * multiplier
    entry, stop = Decimal(f["entry"]), Decimal(f["stop_loss"])
    distance = abs(entry - stop) * rate
    if not distance:
        return None
    units = value * settings.forex_risk_per_trade_pct / HUNDRED / distance
    return min(units * entry * rate, value * limits.max_position_pct / HUNDRED) * multiplier


def as_stored_size(size: Decimal) -> Decimal:
    """A size as its `Decision` row keeps it (PostgreSQL rounds a numeric half away from zero): a trade
    booked with its decision gets the size an executor reading the row gets."""
    return size.quantize(SIZE_QUANTUM, rounding=ROUND_HALF_UP)


def _decision_event(decision: Decision) -> dict:
    return {"id": decision.pk, "opportunity": decision.opportunity_id, "layer": decision.layer,
            "verdict": decision.verdict, "reasons": decision.reasons, "level": decision.level,
            "score": None if decision.score is None else str(decision.score),
            "size_usd": None if decision.size_usd is None else str(decision.size_usd),
            "market_ts": decision.market_ts}


def decide_opportunity(*, opportunity_id: int, feed: Feed, execute: bool = False) -> Outcome:
    """Run the three layers on one opportunity and store their verdicts, once.

    With `execute`, an opportunity the governor approves is filled and booked in the same
    transaction where it can be (`execution.executors.draft_booking`: the feed has reached
    the fill time, the balances it moves exist and fund it), and `Outcome.trade` is its
    trade; else the caller executes it on its own. The trade's key is taken before the risk
    manager's verdict: one that says no leaves a gap in the keys.
    """
    from execution import executors
    from execution.models import ExecutionSettings, Portfolio, Trade
    from execution.portfolio import exposure_from, exposure_statement, open_portfolio_statement
    from trifecta_site.clock import ms_to_datetime

    found, route_state, exposure, version, *portfolio = sql.run(
        sql.get_statement(Opportunity, opportunity_id), ArbitrageAgent.route_state_statement(opportunity_id),
        exposure_statement(), configuration_version_statement(), *([open_portfolio_statement()] if execute else []))
    opportunity = sql.instance_from(Opportunity, found)
    if opportunity is None:
        raise Opportunity.DoesNotExist(f"opportunity {opportunity_id} does not exist")
    if opportunity.status != Opportunity.DETECTED:  # decided before (the unique rows below catch a race)
        return _outcome(list(Decision.objects.filter(opportunity_id=opportunity_id)), created=False)
    now = feed.now()
    with one_configuration_reading(version_from(version)):
        controls, limits = Controls.get_solo(), RiskLimits.get_solo()
        thresholds = THRESHOLD_ROWS[opportunity.kind].get_solo()
        settings = ExecutionSettings.get_solo()
    value, open_routes, open_count = exposure_from(exposure)
    portfolio = sql.instance_from(Portfolio, portfolio[0]) if portfolio else None
    governor_inputs = dict(controls=controls, thresholds=thresholds, data_age_ms=data_age_ms(opportunity, feed, now),
                           max_age_ms=settings.max_quote_age_ms, open_routes=open_routes, open_positions=open_count,
                           max_open_positions=settings.max_open_positions)
    at = ms_to_datetime(now)
    day = risk_day(at, limits)
    agent_class, keys = agent_keys(opportunity)
    learned = agent_class()

    def score(states):
        """The agent's verdict, the proposed size and what the governor would say at LOW risk."""
        learned.known = learned.states_from(states, keys)
        agent = evaluate_agent(opportunity, learned)
        size = proposed_size_usd(opportunity, agent, feed=feed, settings=settings, limits=limits, value=value)
        if size is None:
            agent.approved, agent.reasons = False, [*agent.reasons, "NO_USD_RATE"]
            size = ZERO
        return agent, size, make_decision(opportunity, agent, RiskVerdict(True, "LOW", []), **governor_inputs)

    def draft_at(size_usd: Decimal, trade_id: int | None):
        return executors.draft_booking(opportunity=opportunity, feed=feed, settings=settings, limits=limits, day=day,
                                       portfolio=portfolio, size_usd=size_usd, decided_ts=now, trade_id=trade_id)

    draft = None
    early = execute and portfolio is not None and make_decision(
        opportunity, AgentVerdict(True, ONE, ONE, []), RiskVerdict(True, "LOW", []), **governor_inputs).verdict == EXECUTE
    # An arbitrage route's learned state came with the opportunity: scored before the locks. Another
    # kind's is read with the locks (a round trip less), or before them when the trade may be booked
    # with the decision, whose fill is then planned before them too: the locks are held for the writes.
    scored = (score(route_state) if opportunity.kind == "arbitrage" else
              score(sql.run(learned.states_statement(*keys))[0]) if early else None)
    if early and scored[2].verdict == EXECUTE:
        draft = draft_at(as_stored_size(scored[1]), sql.next_id(Trade))
    try:
        with transaction.atomic():
            if scored:
                agent, size, would = scored
                locked, *balances = sql.run(locked_rows_statement(day),
                                            *([executors.locked_balances_statement(opportunity, portfolio)] if draft else []))
            else:
                states, locked = sql.run(learned.states_statement(*keys), locked_rows_statement(day))
                agent, size, would = score(states)
            risk_rows = locked_rows_from(locked, day)
            risk, risk_writes = assess_trade(size, value, kind=opportunity.kind, now=at,
                                             reserve=would.verdict == EXECUTE, limits=limits, locked=risk_rows)
            governor = make_decision(opportunity, agent, risk, **governor_inputs)
            common = dict(opportunity=opportunity, decided_at=at, market_ts=now)
            rows = [
                Decision(layer=Decision.AGENT, verdict="approve" if agent.approved else "skip", reasons=agent.reasons,
                         figures=agent.figures, score=agent.score, size_usd=size, **common),
                Decision(layer=Decision.RISK, verdict="approved" if risk.approved else "blocked", reasons=risk.reasons,
                         figures={"checks": risk.checks, "day": risk.day, "size_multiplier": str(risk.size_multiplier),
                                  "portfolio_value": str(value)},
                         level=risk.level, size_usd=size * risk.size_multiplier, **common),
                Decision(layer=Decision.GOVERNOR, verdict=governor.verdict, reasons=governor.reasons,
                         figures=governor.figures, size_usd=size * risk.size_multiplier if governor.verdict == EXECUTE else None,
                         **common),
            ]
            booking = booked_writes = None
            if draft is not None and governor.verdict == EXECUTE:
                approved = as_stored_size(size * risk.size_multiplier)
                if approved != draft.size_usd:  # the risk manager shrank it (HIGH): planned again, under the locks
                    draft = draft_at(approved, draft.trade.pk)
                booked_writes = draft and draft.locked_statements(balances[0], risk_rows, limits)
                booking = draft if booked_writes else None
            status = (Opportunity.REJECTED if governor.verdict == SKIP else
                      Opportunity.EXECUTED if booking else Opportunity.DECIDED)
            ids, *results = sql.run(sql.together(*risk_writes, sql.update_statement(Opportunity, opportunity.pk, status=status),
                                                 sql.insert_statement(rows)), *(booked_writes or []), commit=True)
            sql.inserted(rows, ids)
            event = {"opportunity": opportunity.pk, "kind": opportunity.kind, "symbol": opportunity.symbol,
                     "verdict": governor.verdict, "layers": [_decision_event(row) for row in rows]}
            transaction.on_commit(lambda: events.publish("decision", event))
            if booking:
                booking.booked(results)
    except IntegrityError:
        return _outcome(list(Decision.objects.filter(opportunity_id=opportunity_id)), created=False)
    return _outcome(rows, created=True, trade=booking.trade if booking else None)


def pending_opportunity_ids(*, now, older_than_s: int, limit: int) -> set[int]:
    """Opportunities detected in the hour before `now` (wall clock, as `detected_at` is),
    older than `older_than_s`, still undecided or approved for execution without a trade:
    what a lost queue message left undone."""
    from datetime import timedelta

    recent = Opportunity.objects.filter(detected_at__lt=now - timedelta(seconds=older_than_s),
                                        detected_at__gte=now - timedelta(hours=1)).order_by("detected_at")
    undecided = recent.filter(status=Opportunity.DETECTED)
    unexecuted = recent.filter(status=Opportunity.DECIDED, trade__isnull=True, decisions__layer=Decision.GOVERNOR,
                               decisions__verdict=EXECUTE)
    return {*undecided.values_list("pk", flat=True)[:limit], *unexecuted.values_list("pk", flat=True)[:limit]}


def _outcome(rows: list[Decision], *, created: bool, trade=None) -> Outcome:
    governor = next((d for d in rows if d.layer == Decision.GOVERNOR), None)
    return Outcome(governor.verdict if governor else DISPLAY, rows, created, trade)
