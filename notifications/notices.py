"""What each desk event says to the operator: title, text and the figures thresholds test."""
from __future__ import annotations

from datetime import date, datetime

from decisions.models import RiskDay, RiskLimits, RiskState
from decisions.risk import day_loss
from trifecta_site.models import ConfigChange

from .models import RiskHalt, Subscription
from .services import Notice, money

HALT_REASONS = {
    "DAILY_LOSS": "daily loss limit reached",
    "LOSS_STREAK": "loss streak limit reached",
    "DRAWDOWN_HALT": "drawdown limit reached",
}


def kill_switch(*, on: bool) -> Notice:
    change = ConfigChange.objects.filter(setting="controls", field="kill_switch").select_related("changed_by").first()
    who = change.changed_by.get_username() if change is not None and change.changed_by is not None else "someone"
    if on:
        title, body = "Kill switch ON: the desk opens no new trades", f"{who} turned the kill switch on; open positions are still watched."
    else:
        title, body = "Kill switch off: the desk may trade again", f"{who} turned the kill switch off."
    return Notice(event=Subscription.KILL_SWITCH, title=title, body=body, data={"on": on, "by": who})


def risk_halt(*, reason: str, day: date, realized_pnl, at_risk) -> Notice | None:
    """The first trade a halt's limit blocked in the risk day (None when that halt was announced already that day)."""
    if not RiskHalt.objects.get_or_create(day=day, reason=reason)[1]:
        return None
    limits = RiskLimits.get_solo()
    data = {"reason": reason, "day": day.isoformat(), "realized_pnl": str(realized_pnl), "at_risk": str(at_risk)}
    if reason == "DAILY_LOSS":
        loss = day_loss(RiskDay(realized_pnl=realized_pnl, at_risk=at_risk))  # the risk manager's own sum
        detail = f"the day's net loss {money(loss)} (realized plus still at risk) reached the limit {money(limits.max_daily_loss)}"
        data.update(day_loss=str(loss), limit=str(limits.max_daily_loss))
    elif reason == "LOSS_STREAK":
        state = RiskState.get_solo()
        until = f", cooling down until {state.cooldown_until:%Y-%m-%d %H:%M UTC}" if state.cooldown_until else ""
        detail = f"{state.loss_streak} losing trades in a row (limit {limits.max_consecutive_losses}){until}"
        data.update(loss_streak=state.loss_streak, limit=limits.max_consecutive_losses,
                    cooldown_until=state.cooldown_until.isoformat() if state.cooldown_until else None)
    else:
        detail = f"equity is {limits.drawdown_halt_pct}% or more below its peak"
        data.update(limit_pct=str(limits.drawdown_halt_pct))
    return Notice(event=Subscription.RISK_HALT, title=f"Risk halt: {HALT_REASONS[reason]}",
                  body=f"The risk manager blocks new trades ({reason}, risk day {day}): {detail}.", data=data)


def feed_down(*, feed: str, venue: str, error: str, at: datetime) -> Notice:
    return Notice(event=Subscription.FEED_DOWN, title=f"Feed down: {feed} {venue}",
                  body=f"{feed} stopped answering for {venue} at {at:%Y-%m-%d %H:%M:%S UTC}: {error or 'no reason given'}",
                  data={"feed": feed, "venue": venue, "error": error, "at": at.isoformat()})


def feed_back(*, feed: str, venue: str, state: str, down_since: datetime, at: datetime) -> Notice:
    outage_s = (at - down_since).total_seconds()
    return Notice(event=Subscription.FEED_BACK, title=f"Feed back: {feed} {venue} after {outage_s:.0f} s",
                  body=f"{feed} answers again for {venue} ({state}) after {outage_s:.0f} s down "
                       f"(since {down_since:%Y-%m-%d %H:%M:%S UTC}).",
                  data={"feed": feed, "venue": venue, "state": state, "outage_s": round(outage_s, 3),
                        "down_since": down_since.isoformat(), "at": at.isoformat()})


def trade_closed(*, trade_id: int, kind: str, symbol: str, venues, direction: str, size_usd, realized_pnl) -> Notice:
    where = "→".join(venues) if isinstance(venues, list) else str(venues)
    side = f" {direction}" if direction else ""
    return Notice(event=Subscription.TRADE_CLOSED, title=f"Trade closed: {kind} {symbol} {money(realized_pnl)}",
                  body=f"Trade #{trade_id} ({kind}{side} {symbol} on {where}, size {money(size_usd)}) closed with "
                       f"realized P&L {money(realized_pnl)}.",
                  data={"trade": trade_id, "kind": kind, "symbol": symbol, "venues": venues, "direction": direction,
                        "size_usd": str(size_usd), "realized_pnl": str(realized_pnl)})
