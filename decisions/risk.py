"""The risk manager: may this trade happen, how risky is the desk now, and why.

`check_trade_approval` reads the limits, then locks the risk state and the day's row,
checks every limit, and when it approves reserves the trade slot in the same
transaction (`assess_trade` is the same check inside a caller's transaction): N workers
approving at once can never exceed the daily count or the loss budget (PostgreSQL: row locks; SQLite: IMMEDIATE transactions serialise writers).

Risk level, from the highest usage of any limit (usage = used / limit):
    LOW below 50 %, MEDIUM below 80 %, HIGH from 80 %, BLOCKED when a limit is reached.
At HIGH the approved size is halved (`size_multiplier` 0.5). Binary stakes are only
approved at LOW or MEDIUM.

Every trade's size is first cut so that its worst case (`max_loss`) fits the smaller of the
per-trade risk (% of equity) and the day's loss budget left, and the asset's open exposure
stays within the position limit (`size_to_budget`). The day's loss is net: the day's
realized P&L when negative, plus the worst case still at risk in what the day approved.

Reason codes: TRADE_COUNT, DAILY_LOSS, LOSS_STREAK, COOLDOWN, POSITION_SIZE, RISK_BUDGET,
DRAWDOWN_HALT, BINARY_STAKE, BINARY_RISK_LEVEL.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import transaction
from django.db.models import DecimalField, F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from trifecta_site import sql

from .models import RiskDay, RiskLimits, RiskState

LOW, MEDIUM, HIGH, BLOCKED = "LOW", "MEDIUM", "HIGH", "BLOCKED"
HUNDRED = Decimal(100)
ZERO = Decimal(0)


@dataclass
class RiskVerdict:
    approved: bool
    level: str
    reasons: list[str]
    checks: dict = field(default_factory=dict)  # check -> {"used", "limit", "usage"} as strings
    size_multiplier: Decimal = Decimal(1)
    day: str = ""
    size_usd: Decimal | None = None  # the approved size, sized to the risk budget (None: no size approved)
    max_loss_usd: Decimal | None = None  # its worst case, reserved in the day's budget
    sizing: dict = field(default_factory=dict)  # what bounded the size, as strings


def risk_day(moment: datetime, limits: RiskLimits):
    """The calendar date of `moment` in the limits' time zone."""
    return moment.astimezone(ZoneInfo(limits.day_timezone)).date()


def locked_rows(day) -> tuple[RiskState, RiskDay]:
    """The risk state and the day's row, locked until the caller's transaction ends (always
    in this order, so two workers never wait on each other crosswise); created once a day.
    PostgreSQL locks and reads both in one statement (a join locks its tables' rows in the
    order they are named)."""
    if sql.hand_written():
        found = sql.fetch(_both_locked_sql(), [sql.prepared(RiskDay, "date", day)])
        if found:
            split = len(_STATE_FIELDS)
            return (sql.instance(RiskState, _STATE_FIELDS, found[0][:split]),
                    sql.instance(RiskDay, _DAY_FIELDS, found[0][split:]))
    state = RiskState.objects.select_for_update().filter(pk=1).first()
    if state is None:
        RiskState.objects.get_or_create(pk=1)
        state = RiskState.objects.select_for_update().get(pk=1)
    today = RiskDay.objects.select_for_update().filter(date=day).first()
    if today is None:
        RiskDay.objects.get_or_create(date=day)
        today = RiskDay.objects.select_for_update().get(date=day)
    return state, today


_STATE_FIELDS = [f.name for f in RiskState._meta.concrete_fields]
_DAY_FIELDS = [f.name for f in RiskDay._meta.concrete_fields]


@functools.cache
def _both_locked_sql() -> str:
    columns = [f"s.{sql.column(RiskState, f)}" for f in _STATE_FIELDS] + [f"d.{sql.column(RiskDay, f)}" for f in _DAY_FIELDS]
    return (f"SELECT {', '.join(columns)} FROM {sql.table(RiskState)} s, {sql.table(RiskDay)} d"
            f" WHERE s.{sql.column(RiskState, 'id')} = 1 AND d.{sql.column(RiskDay, 'date')} = %s FOR UPDATE")


def level_for(usage: Decimal) -> str:
    if usage >= 1:
        return BLOCKED
    if usage >= Decimal("0.8"):
        return HIGH
    if usage >= Decimal("0.5"):
        return MEDIUM
    return LOW


def day_loss(today: RiskDay) -> Decimal:
    """The day's loss against its limit, net: what the day's closed trades lost overall, plus the
    worst case still at risk in what it approved and has not closed."""
    return max(ZERO, -today.realized_pnl) + max(ZERO, today.at_risk)


def size_to_budget(size: Decimal, *, portfolio_value: Decimal, limits: RiskLimits, today: RiskDay,
                   loss_per_usd: Decimal, asset_exposure: Decimal) -> tuple[Decimal, dict]:
    """The largest size up to `size` whose worst case (size × `loss_per_usd`) fits the smaller of
    the per-trade risk and the day's loss budget left, and that keeps the asset's open exposure
    within the position limit."""
    per_trade = portfolio_value * limits.max_risk_per_trade_pct / HUNDRED
    day_left = max(ZERO, limits.max_daily_loss - day_loss(today))
    budget = min(per_trade, day_left)
    room = max(ZERO, portfolio_value * limits.max_position_pct / HUNDRED - asset_exposure)
    by_budget = budget / loss_per_usd if loss_per_usd > 0 else size
    sized = max(ZERO, min(size, by_budget, room))
    bound = "proposed" if sized == size else "risk_budget" if by_budget <= room else "position_limit"
    return sized, {"proposed": str(size), "per_trade_budget": str(per_trade), "day_budget_left": str(day_left),
                   "loss_per_usd": str(loss_per_usd), "position_room": str(room), "bounded_by": bound}


def evaluate_limits(limits: RiskLimits, state: RiskState, today: RiskDay, *, size: Decimal, portfolio_value: Decimal,
                    kind: str, now: datetime, asset_exposure: Decimal = ZERO) -> tuple[dict, list[str], str]:
    """Every check's figures, the reason codes of the limits reached, and the risk level (no writes)."""
    checks, reasons = {}, []

    def check(name, used, limit, code, blocked=None):
        usage = (used / limit) if limit else Decimal(1)
        checks[name] = {"used": str(used), "limit": str(limit), "usage": str(usage.quantize(Decimal("0.0001")))}
        if blocked if blocked is not None else usage >= 1:
            reasons.append(code)
        return usage

    streak = 0 if state.cooldown_until and state.cooldown_until <= now else state.loss_streak
    peak = max(state.peak_equity or portfolio_value, portfolio_value)
    drawdown = (peak - portfolio_value) / peak * HUNDRED if peak else Decimal(0)
    desk_usage = max(
        check("trades_today", Decimal(today.trades), Decimal(limits.max_trades_per_day), "TRADE_COUNT"),
        check("daily_loss", day_loss(today), limits.max_daily_loss, "DAILY_LOSS"),
        check("loss_streak", Decimal(streak), Decimal(limits.max_consecutive_losses), "LOSS_STREAK"),
        check("drawdown_pct", drawdown, limits.drawdown_halt_pct, "DRAWDOWN_HALT"),
    )
    position_limit = portfolio_value * limits.max_position_pct / HUNDRED
    check("position", asset_exposure + size, position_limit, "POSITION_SIZE", blocked=asset_exposure + size > position_limit)
    if state.cooldown_until and state.cooldown_until > now:
        reasons.append("COOLDOWN")
        checks["cooldown_until"] = {"used": state.cooldown_until.isoformat(), "limit": "", "usage": "1"}
    level = BLOCKED if reasons else level_for(desk_usage)
    if kind == "binary" and not reasons:
        stake_limit = portfolio_value * limits.binary_max_stake_pct / HUNDRED
        check("binary_stake", size, stake_limit, "BINARY_STAKE", blocked=size > stake_limit)
        if level not in (LOW, MEDIUM):
            reasons.append("BINARY_RISK_LEVEL")
    return checks, reasons, level


def check_trade_approval(asset: str, size: Decimal, direction: str, portfolio_value: Decimal, *,
                         kind: str = "arbitrage", now: datetime | None = None, reserve: bool = True,
                         limits: RiskLimits | None = None, loss_per_usd: Decimal | None = None,
                         asset_exposure: Decimal = ZERO) -> RiskVerdict:
    """Approve or block one trade of notional `size` (USD); reserve its slot when approved."""
    with transaction.atomic(savepoint=False):  # part of the caller's transaction when there is one
        return assess_trade(size, portfolio_value, kind=kind, now=now or timezone.now(), reserve=reserve,
                            limits=limits or RiskLimits.get_solo(), loss_per_usd=loss_per_usd,
                            asset_exposure=asset_exposure)


def assess_trade(size: Decimal, portfolio_value: Decimal, *, kind: str, now: datetime, reserve: bool,
                 limits: RiskLimits, locked: tuple[RiskState, RiskDay] | None = None,
                 loss_per_usd: Decimal | None = None, asset_exposure: Decimal = ZERO,
                 writes: sql.Writes | None = None) -> RiskVerdict:
    """The verdict, taken under the risk rows' locks in the caller's open transaction, and its
    record (the slot and the worst case reserved, the limit trips, the equity peak) written there
    (`writes`: where the caller holds its writes for one statement, `trifecta_site.sql.Writes`).

    With `loss_per_usd` (the trade's worst-case loss per USD of size) the size is first cut to
    the risk budget and the position limit (`size_to_budget`), and what falls below the
    minimum trade is refused (RISK_BUDGET). `locked`: the rows of
    `locked_rows(risk_day(now, limits))`, where the caller holds them already."""
    day = risk_day(now, limits)
    state, today = locked_rows(day) if locked is None else locked
    state_changes = []
    if state.cooldown_until and state.cooldown_until <= now:
        state.loss_streak, state.cooldown_until = 0, None  # the pause is over: a fresh streak
        state_changes += ["loss_streak", "cooldown_until"]
    sizing = {}
    if loss_per_usd is not None:
        size, sizing = size_to_budget(size, portfolio_value=portfolio_value, limits=limits, today=today,
                                      loss_per_usd=loss_per_usd, asset_exposure=asset_exposure)
    checks, reasons, level = evaluate_limits(limits, state, today, size=size, portfolio_value=portfolio_value,
                                             kind=kind, now=now, asset_exposure=asset_exposure)
    if loss_per_usd is not None and size < limits.min_trade_usd and not {"DAILY_LOSS", "POSITION_SIZE"} & set(reasons):
        reasons.append("POSITION_SIZE" if sizing["bounded_by"] == "position_limit" else "RISK_BUDGET")
    approved = not reasons
    multiplier = Decimal("0.5") if level == HIGH else Decimal(1)
    approved_size = size * multiplier if approved else None
    max_loss = approved_size * loss_per_usd if approved and loss_per_usd is not None else None
    if approved and reserve:
        today.trades += 1
        today.at_risk += max_loss or ZERO
        _write(today, ["trades", "at_risk"], writes)
    elif not approved:
        today.limit_trips = {**today.limit_trips, **{code: today.limit_trips.get(code, 0) + 1 for code in reasons}}
        _write(today, ["limit_trips"], writes)
    if state.peak_equity is None or portfolio_value > state.peak_equity:
        state.peak_equity = portfolio_value
        state_changes.append("peak_equity")
    if state_changes:
        _write(state, state_changes, writes)
    return RiskVerdict(
        approved=approved, level=BLOCKED if not approved else level, reasons=reasons, checks=checks,
        size_multiplier=multiplier, day=day.isoformat(), size_usd=approved_size, max_loss_usd=max_loss, sizing=sizing,
    )


def _write(row, fields: list[str], writes) -> None:
    if writes is None:
        row.save(update_fields=fields)
    else:
        writes.save(row, fields)


def risk_usage(*, portfolio_value: Decimal, now: datetime | None = None) -> dict:
    """Today's usage against each limit and the desk's risk level, read without locks or writes."""
    now = now or timezone.now()
    limits = RiskLimits.get_solo()
    day = risk_day(now, limits)
    state = RiskState.objects.filter(pk=1).first() or RiskState()
    today = RiskDay.objects.filter(date=day).first() or RiskDay(date=day)
    checks, reasons, level = evaluate_limits(limits, state, today, size=Decimal(0), portfolio_value=portfolio_value,
                                             kind="arbitrage", now=now)
    checks.pop("position", None)
    return {"day": day.isoformat(), "timezone": limits.day_timezone, "level": level, "reasons": reasons,
            "checks": checks, "realized_pnl": str(today.realized_pnl), "limit_trips": today.limit_trips,
            "cooldown_until": state.cooldown_until.isoformat() if state.cooldown_until else None,
            "peak_equity": None if state.peak_equity is None else str(state.peak_equity)}


def record_outcome(*, realized_pnl: Decimal, at: datetime | None = None, limits: RiskLimits | None = None,
                   released_usd: Decimal = ZERO, approved_at: datetime | None = None) -> None:
    """A closed trade's realized P&L: the day's loss budget, the loss streak and its cooldown
    (under the risk rows' locks, in the caller's transaction when there is one); its worst
    case `released_usd` leaves the budget of the day that approved it (`approved_at`)."""
    at = at or timezone.now()
    limits = limits or RiskLimits.get_solo()
    with transaction.atomic(savepoint=False):
        state, today = locked_rows(risk_day(at, limits))
        apply_outcome(state, today, realized_pnl=realized_pnl, at=at, limits=limits, released_usd=released_usd,
                      approved_day=risk_day(approved_at or at, limits))


def apply_outcome(state: RiskState, today: RiskDay, *, realized_pnl: Decimal, at: datetime, limits: RiskLimits,
                  released_usd: Decimal = ZERO, approved_day=None, writes: sql.Writes | None = None) -> None:
    """Write what one realized outcome changes in the locked risk rows (Decimal arithmetic here: SQLite
    would add floats; `writes`: as `assess_trade`'s)."""
    streak, cooldown_until, loss = state.loss_streak, state.cooldown_until, ZERO
    if realized_pnl < 0:
        loss, streak = -realized_pnl, streak + 1
        if streak >= limits.max_consecutive_losses:
            cooldown_until = at + timedelta(minutes=limits.cooldown_minutes)
    elif realized_pnl > 0:
        streak = 0
    today.realized_pnl += realized_pnl
    today.realized_loss += loss
    fields = ["realized_pnl", "realized_loss"]
    if released_usd and approved_day in (None, today.date):
        today.at_risk = max(ZERO, today.at_risk - released_usd)
        fields.append("at_risk")
    elif released_usd:
        release_risk(day=approved_day, amount=released_usd)
    _write(today, fields, writes)
    if (streak, cooldown_until) != (state.loss_streak, state.cooldown_until):
        state.loss_streak, state.cooldown_until = streak, cooldown_until
        _write(state, ["loss_streak", "cooldown_until"], writes)


def release_risk(*, day, amount: Decimal) -> None:
    """Take a closed or cancelled trade's worst case out of the budget of the day that approved it."""
    if amount:
        RiskDay.objects.filter(date=day).update(at_risk=Greatest(F("at_risk") - amount, Value(ZERO, output_field=DecimalField())))


def release_trade_slot(*, at: datetime, max_loss_usd: Decimal = ZERO) -> None:
    """Give back a reserved slot (and its worst case) whose execution was rejected (no fill happened)."""
    limits = RiskLimits.get_solo()
    day = risk_day(at, limits)
    RiskDay.objects.filter(date=day, trades__gt=0).update(trades=F("trades") - 1)
    release_risk(day=day, amount=max_loss_usd)
