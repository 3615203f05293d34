"""The risk manager: may this trade happen, how risky is the desk now, and why.

`check_trade_approval` reads the limits, then locks the day's row and the risk state,
checks every limit, and when it approves reserves the trade slot in the same
transaction (`assess_trade` is the same check for a caller that sends the writes with its
own): N workers approving at once can never exceed the daily count or the loss
budget (PostgreSQL: row locks; SQLite: IMMEDIATE transactions serialise writers).

Risk level, from the highest usage of any limit (usage = used / limit):
    LOW below 50 %, MEDIUM below 80 %, HIGH from 80 %, BLOCKED when a limit is reached.
At HIGH the approved size is halved (`size_multiplier` 0.5). Binary stakes are only
approved at LOW or MEDIUM.

Reason codes: TRADE_COUNT, DAILY_LOSS, LOSS_STREAK, COOLDOWN, POSITION_SIZE,
DRAWDOWN_HALT, BINARY_STAKE, BINARY_RISK_LEVEL.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.utils import timezone

from trifecta_site import statements as sql

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


def risk_day(moment: datetime, limits: RiskLimits):
    """The calendar date of `moment` in the limits' time zone."""
    return moment.astimezone(ZoneInfo(limits.day_timezone)).date()


STATE_FIELDS = ("loss_streak", "cooldown_until", "peak_equity")
DAY_FIELDS = ("id", "trades", "realized_pnl", "realized_loss", "limit_trips")


@functools.cache
def _locked_rows_sql() -> tuple[str, list]:
    fields = [RiskState._meta.get_field(n) for n in STATE_FIELDS] + [RiskDay._meta.get_field(n) for n in DAY_FIELDS]
    columns = [f"s.{sql.column(RiskState, n)}" for n in STATE_FIELDS] + [f"d.{sql.column(RiskDay, n)}" for n in DAY_FIELDS]
    return (f"SELECT {', '.join(columns)} FROM {sql.table(RiskState)} s, {sql.table(RiskDay)} d "
            f"WHERE s.id = 1 AND d.{sql.column(RiskDay, 'date')} = %s{sql.row_lock()}"), fields


def locked_rows_statement(day) -> sql.Statement:
    """The risk state and the day's row, both locked by one statement (see `locked_rows_from`)."""
    query, fields = _locked_rows_sql()
    return sql.Statement(query, [RiskDay._meta.get_field("date").get_db_prep_value(day, connection)], fields)


def locked_rows_from(rows: list[tuple], day) -> tuple[RiskState, RiskDay]:
    """The rows `locked_rows_statement` read; when one was missing (once a day) it is created and both read again."""
    if not rows:
        RiskState.objects.get_or_create(pk=1)
        RiskDay.objects.get_or_create(date=day)
        rows = sql.run(locked_rows_statement(day))[0]
    values = rows[0]
    state = RiskState(pk=1, **dict(zip(STATE_FIELDS, values[:len(STATE_FIELDS)])))
    today = RiskDay(date=day, **dict(zip(DAY_FIELDS, values[len(STATE_FIELDS):])))
    state._state.adding = today._state.adding = False
    return state, today


def locked_rows(day) -> tuple[RiskState, RiskDay]:
    return locked_rows_from(sql.run(locked_rows_statement(day))[0], day)


def level_for(usage: Decimal) -> str:
    if usage >= 1:
        return BLOCKED
    if usage >= Decimal("0.8"):
        return HIGH
    if usage >= Decimal("0.5"):
        return MEDIUM
    return LOW


def evaluate_limits(limits: RiskLimits, state: RiskState, today: RiskDay, *, size: Decimal, portfolio_value: Decimal,
                    kind: str, now: datetime) -> tuple[dict, list[str], str]:
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
        check("daily_loss", today.realized_loss, limits.max_daily_loss, "DAILY_LOSS"),
        check("loss_streak", Decimal(streak), Decimal(limits.max_consecutive_losses), "LOSS_STREAK"),
        check("drawdown_pct", drawdown, limits.drawdown_halt_pct, "DRAWDOWN_HALT"),
    )
    position_limit = portfolio_value * limits.max_position_pct / HUNDRED
    check("position", size, position_limit, "POSITION_SIZE", blocked=size > position_limit)
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
                         limits: RiskLimits | None = None) -> RiskVerdict:
    """Approve or block one trade of notional `size` (USD); reserve its slot when approved."""
    with transaction.atomic(savepoint=False):  # part of the caller's transaction when there is one
        verdict, writes = assess_trade(size, portfolio_value, kind=kind, now=now or timezone.now(),
                                       reserve=reserve, limits=limits or RiskLimits.get_solo())
        if writes:
            sql.run(*writes)
    return verdict


def assess_trade(size: Decimal, portfolio_value: Decimal, *, kind: str, now: datetime, reserve: bool,
                 limits: RiskLimits, locked: tuple[RiskState, RiskDay] | None = None
                 ) -> tuple[RiskVerdict, list[sql.Statement]]:
    """The verdict, taken under the risk rows' locks in the caller's open transaction, and the
    writes that record it (the slot, the limit trips, the equity peak), which the caller
    sends with its own before the transaction ends: the locks are held for one round trip less.
    `locked`: the rows of `locked_rows_statement(risk_day(now, limits))` (`locked_rows_from`),
    where the caller sent it with its own statements (else it is run here); a reset of the
    loss streak is made on them too."""
    day = risk_day(now, limits)
    state, today = locked_rows(day) if locked is None else locked
    writes, state_changes = [], {}
    if state.cooldown_until and state.cooldown_until <= now:
        state.loss_streak, state.cooldown_until = 0, None  # the pause is over: a fresh streak
        state_changes.update(loss_streak=0, cooldown_until=None)
    checks, reasons, level = evaluate_limits(limits, state, today, size=size, portfolio_value=portfolio_value,
                                             kind=kind, now=now)
    approved = not reasons
    if approved and reserve:
        writes.append(sql.update_statement(RiskDay, today.pk, trades=today.trades + 1))
    elif not approved:
        trips = {**today.limit_trips, **{code: today.limit_trips.get(code, 0) + 1 for code in reasons}}
        writes.append(sql.update_statement(RiskDay, today.pk, limit_trips=trips))
    if state.peak_equity is None or portfolio_value > state.peak_equity:
        state_changes.update(peak_equity=portfolio_value)
    if state_changes:  # one write per row: the caller may send them as one statement (`statements.together`)
        writes.append(sql.update_statement(RiskState, 1, **state_changes))
    verdict = RiskVerdict(
        approved=approved, level=BLOCKED if not approved else level, reasons=reasons, checks=checks,
        size_multiplier=Decimal("0.5") if level == HIGH else Decimal(1), day=day.isoformat(),
    )
    return verdict, writes


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


def record_outcome(*, realized_pnl: Decimal, at: datetime | None = None) -> None:
    """A closed position's realized P&L: the day's loss budget, the loss streak and its cooldown."""
    at = at or timezone.now()
    limits = RiskLimits.get_solo()
    with transaction.atomic(savepoint=False):
        state, today = locked_rows(risk_day(at, limits))
        sql.run(*outcome_writes(state, today, realized_pnl=realized_pnl, at=at, limits=limits))


def outcome_writes(state: RiskState, today: RiskDay, *, realized_pnl: Decimal, at: datetime,
                   limits: RiskLimits) -> list[sql.Statement]:
    """What one realized outcome changes in the locked risk rows (Decimal arithmetic here: SQLite would add floats)."""
    streak, cooldown_until, loss = state.loss_streak, state.cooldown_until, ZERO
    if realized_pnl < 0:
        loss, streak = -realized_pnl, streak + 1
        if streak >= limits.max_consecutive_losses:
            cooldown_until = at + timedelta(minutes=limits.cooldown_minutes)
    elif realized_pnl > 0:
        streak = 0
    writes = [sql.update_statement(RiskDay, today.pk, realized_pnl=today.realized_pnl + realized_pnl,
                                   realized_loss=today.realized_loss + loss)]
    if (streak, cooldown_until) != (state.loss_streak, state.cooldown_until):
        writes.append(sql.update_statement(RiskState, 1, loss_streak=streak, cooldown_until=cooldown_until))
    return writes


def release_trade_slot(*, at: datetime) -> None:
    """Give back a reserved slot whose execution was rejected (no fill happened)."""
    from django.db.models import F

    limits = RiskLimits.get_solo()
    RiskDay.objects.filter(date=risk_day(at, limits), trades__gt=0).update(trades=F("trades") - 1)
