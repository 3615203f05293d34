"""Booking a planned execution: the trade, its fills, the balances it moves and the position
it opens (or, for a trade that closes at once, its outcome for the agents and the risk day),
all in the caller's transaction. The trade is unique per opportunity: a second booking of
the same opportunity collides and rolls back, so an execution happens at most once."""
from __future__ import annotations

import functools
import operator
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q

from decisions.agents import RealizedOutcome, learn
from decisions.models import RiskDay, RiskLimits, RiskState
from decisions.risk import apply_outcome, locked_rows, release_trade_slot, risk_day
from scanners.models import Opportunity
from trifecta_site import sql
from trifecta_site.clock import ms_to_datetime

from .events import announce_position, announce_trade
from .models import Balance, ExecutionSettings, Fill, Portfolio, Position, Trade, stored
from .planning import Plan, Rejected

ZERO = Decimal(0)
INSUFFICIENT_BALANCE = "INSUFFICIENT_BALANCE"


@dataclass(frozen=True)
class TradeRisk:
    """What the decision approved the trade with: its worst case (reserved in the day's budget
    until the trade closes), expected P&L and calibrated probability."""

    max_loss_usd: Decimal | None = None
    expected_pnl_usd: Decimal | None = None
    probability: Decimal | None = None
    approved_at: datetime | None = None


def balance_keys(opportunity: Opportunity, portfolio: Portfolio) -> set[tuple[str, str]]:
    """The balances an execution of the opportunity can move: the cash account, and each
    arbitrage leg's two currencies on its venue."""
    keys = {(Balance.DESK, portfolio.currency)}
    if opportunity.kind == "arbitrage":
        for venue, symbol in opportunity.legs():
            base, rest = symbol.split("/", 1)
            keys |= {(venue, base), (venue, rest.split(":")[0])}
    return keys


def book(plan: Plan, *, portfolio: Portfolio, settings: ExecutionSettings, limits: RiskLimits,
         risk_rows: tuple[RiskState, RiskDay] | None = None, risk: TradeRisk = TradeRisk(),
         writes: sql.Writes | None = None) -> Trade:
    """Book the plan in the caller's transaction and return its trade (a rejected one when the
    plan was rejected or the venues cannot fund it: no transfers are simulated).

    Locks are taken in one order everywhere: the risk rows (a trade that closes at once
    records its outcome there; `risk_rows`: those the caller holds already), then the
    balances sorted by venue and currency. `writes`: the caller's writes held for one
    statement (PostgreSQL), which the booking's join; the trade has its id once they are sent."""
    if plan.rejected is None:
        closes_now = plan.position is None
        opened_at = ms_to_datetime(plan.opened_ts)
        day = risk_day(opened_at, limits)
        if closes_now and (risk_rows is None or risk_rows[1].date != day):
            if writes is not None:
                writes.send()  # what is held is written before other risk rows are read
            risk_rows = locked_rows(day)
        try:
            balances = _locked_balances(plan, portfolio, settings)
            moved = _move_balances(plan, portfolio, balances)
        except Rejected as rejection:
            plan.rejected = rejection
        else:
            trade = _new_trade(plan, portfolio, risk)
            if closes_now:
                trade.status, trade.realized_pnl = Trade.CLOSED, stored(plan.realized_usd)
                trade.closed_ts, trade.closed_at = plan.opened_ts, opened_at
            else:
                trade.status = Trade.OPEN
            if writes is None:
                trade.save(force_insert=True)
                Fill.objects.bulk_create(_fills(plan, trade))
                Balance.objects.bulk_update(moved, ["free", "reserved", "total"])
                Opportunity.objects.filter(pk=plan.opportunity.pk).update(status=Opportunity.EXECUTED)
            else:
                writes.insert([trade], signal=True)
                writes.insert(_fills(plan, trade), parent=("trade", trade))
                for balance in moved:
                    writes.save(balance, ["free", "reserved", "total"], signal=False)
                writes.update(Opportunity, plan.opportunity.pk, {"status": Opportunity.EXECUTED})
            if closes_now:
                learn(RealizedOutcome(kind=trade.kind, route=trade.route, symbol=trade.symbol, direction=trade.direction,
                                      realized_pnl=trade.realized_pnl, expected_pnl=trade.expected_pnl_usd,
                                      won=trade.realized_pnl > 0), writes=writes)
                apply_outcome(*risk_rows, realized_pnl=trade.realized_pnl, at=trade.closed_at, limits=limits,
                              released_usd=risk.max_loss_usd or ZERO,
                              approved_day=risk_day(risk.approved_at or opened_at, limits), writes=writes)
            else:
                spec = {key: value for key, value in plan.position.items() if key != "spread"}
                position = Position(trade=trade, opened_ts=plan.opened_ts, checked_ts=plan.opened_ts,
                                    reserved_usd=plan.reserve_usd, **spec)
                if writes is None:
                    position.save(force_insert=True)
                    announce_position(position)
                else:
                    writes.insert([position], parent=("trade", trade), signal=True)
                    writes.then(lambda: announce_position(position))
            if writes is None:
                announce_trade(trade)
            else:
                writes.then(lambda: announce_trade(trade))
            return trade
    if writes is not None:
        writes.send()  # the slot is given back by an increment: after the reservation held is written
    return book_rejected(plan, portfolio=portfolio, risk=risk)


def book_rejected(plan: Plan, *, portfolio: Portfolio, risk: TradeRisk = TradeRisk()) -> Trade:
    """A trade that did not happen, with its reason; the day's trade slot and risk are given back."""
    trade = _new_trade(plan, portfolio, risk)
    trade.status, trade.reject_reason = Trade.REJECTED, plan.rejected.reason
    trade.edge = {"rejected": plan.rejected.reason, **plan.rejected.detail}
    trade.save(force_insert=True)
    Opportunity.objects.filter(pk=plan.opportunity.pk).update(status=Opportunity.REJECTED)
    release_trade_slot(at=risk.approved_at or ms_to_datetime(plan.opened_ts), max_loss_usd=risk.max_loss_usd or ZERO)
    announce_trade(trade)
    return trade


def _new_trade(plan: Plan, portfolio: Portfolio, risk: TradeRisk) -> Trade:
    opportunity = plan.opportunity
    edge = dict(plan.edge)
    if plan.position and plan.position.get("spread") is not None:
        edge["entry_spread"] = str(plan.position["spread"])
    return Trade(
        portfolio=portfolio, opportunity=opportunity, kind=opportunity.kind, route=opportunity.route,
        symbol=opportunity.symbol, venues=opportunity.venues, direction=opportunity.direction,
        opened_ts=plan.opened_ts, opened_at=ms_to_datetime(plan.opened_ts), size_usd=stored(plan.size_usd),
        fees_usd=stored(plan.fees_usd), expected_pnl_usd=_stored_or_none(
            plan.expected_usd if plan.expected_usd is not None else risk.expected_pnl_usd),
        max_loss_usd=_stored_or_none(risk.max_loss_usd), probability=risk.probability, edge=edge,
    )


def _stored_or_none(value: Decimal | None) -> Decimal | None:
    return None if value is None else stored(value)


def _fills(plan: Plan, trade: Trade) -> list[Fill]:
    return [
        Fill(trade=trade, leg=k, venue=leg.venue, symbol=leg.symbol, side=leg.side, requested=leg.fill.requested,
             quantity=leg.fill.quantity, price=leg.fill.price, notional=leg.fill.notional, fee=leg.fill.fee,
             fee_rate=leg.fill.fee_rate, filled_ts=leg.fill.filled_ts or plan.opened_ts,
             evidence={**leg.fill.evidence(),
                       "detected_price": None if leg.detected_price is None else str(leg.detected_price)})
        for k, leg in enumerate(plan.legs, start=1)
    ]


def _flows(plan: Plan) -> dict[tuple[str, str], Decimal]:
    """The plan's flows per (venue, currency), as stored."""
    return {key: stored(amount) for key, amount in sorted(plan.flows.items())}


def _locked_balances(plan: Plan, portfolio: Portfolio, settings: ExecutionSettings) -> dict:
    """The balances the plan moves, locked; inventory used for the first time is seeded first."""
    keys = set(plan.flows)
    if plan.reserve_usd or plan.position is None:
        keys.add((Balance.DESK, portfolio.currency))
    if not keys:
        return {}
    found = _select_locked(portfolio, keys)
    if keys - found.keys():
        if (Balance.DESK, portfolio.currency) not in found and (Balance.DESK, portfolio.currency) in keys:
            raise Balance.DoesNotExist(f"portfolio {portfolio.pk} has no cash account")
        _seed(portfolio, keys - found.keys(), plan.seed_rates, settings)
        found = _select_locked(portfolio, keys)
    return found


def _select_locked(portfolio: Portfolio, keys: set) -> dict:
    match = functools.reduce(operator.or_, (Q(venue=venue, currency=currency) for venue, currency in sorted(keys)))
    rows = Balance.objects.select_for_update().filter(match, portfolio=portfolio).order_by("venue", "currency")
    return {(b.venue, b.currency): b for b in rows}


def _move_balances(plan: Plan, portfolio: Portfolio, balances: dict) -> list[Balance]:
    """Move the locked balances; refuse what the venue cannot fund. A trade that closes at once
    moves its realized P&L into the cash account; one that opens a position reserves its margin
    or stake there. Decimal arithmetic here: SQLite would add floats."""
    desk = (Balance.DESK, portfolio.currency)
    reserve = stored(plan.reserve_usd)
    if reserve:
        cash = balances[desk]
        if cash.free < reserve:
            raise Rejected(INSUFFICIENT_BALANCE, {"venue": Balance.DESK, "needed": str(reserve), "free": str(cash.free)})
        cash.free -= reserve
        cash.reserved += reserve
    plan.reserve_usd = reserve
    for key, amount in _flows(plan).items():
        balance = balances[key]
        if balance.free + amount < 0:
            raise Rejected(INSUFFICIENT_BALANCE, {"venue": key[0], "currency": key[1],
                                                  "needed": str(-amount), "free": str(balance.free)})
        balance.free += amount
        balance.total += amount
    if plan.position is None:
        cash = balances[desk]
        cash.total += stored(plan.realized_usd)
        cash.free = cash.total - cash.reserved
    return list(balances.values())


def _seed(portfolio: Portfolio, keys, usd_rates: dict, settings: ExecutionSettings) -> None:
    """Inventory rows used for the first time, each with `inventory_usd` worth: its seed value,
    part of the portfolio's starting value (see `portfolio`)."""
    for venue, currency in sorted(keys):
        rate = usd_rates.get(currency)
        amount = stored(settings.inventory_usd / rate) if rate else ZERO
        try:
            with transaction.atomic():
                Balance.objects.create(portfolio=portfolio, venue=venue, currency=currency, free=amount, total=amount,
                                       usd_at_seed=rate, usd_mark=rate, seed_usd=stored(amount * rate) if rate else ZERO)
        except IntegrityError:
            pass  # another worker seeded it first
