"""How this app hears of desk events: the desk's own model saves (Django's `pre_save` and
`post_save`), so nothing in scanners, decisions or execution knows this app exists.

Each receiver only decides whether a save is an event; the notice is built and its
deliveries written after the desk's transaction commits (`services.notify_after_commit`).
    kill switch   Controls saved with `kill_switch` changed
    risk halt     RiskDay's `limit_trips` saved with a halt reason counted for the first time
                  that day (DAILY_LOSS, LOSS_STREAK, DRAWDOWN_HALT): the first trade it blocked
    feed          FeedState saved down with no open outage (down), or not down with one (back)
    trade closed  Trade saved closed: created closed, or its status saved (settled)
"""
from __future__ import annotations

from django.db.models.signals import post_save, pre_save
from django.dispatch import receiver
from django.utils import timezone

from decisions.models import Controls, RiskDay
from execution.models import Trade
from scanners.feeds.base import DOWN
from scanners.models import FeedState

from . import notices
from .models import FeedOutage, Subscription, subscribed_events
from .services import notify_after_commit

_kill_switch_before: dict[int, bool | None] = {}  # id(instance) -> the stored value, between pre_save and post_save


@receiver(pre_save, sender=Controls, dispatch_uid="notifications.kill_switch_before")
def remember_kill_switch(sender, instance, raw=False, **_signal):
    if not raw:
        _kill_switch_before[id(instance)] = (Controls.objects.filter(pk=instance.pk).values_list("kill_switch", flat=True).first()
                                             if instance.pk is not None else None)


@receiver(post_save, sender=Controls, dispatch_uid="notifications.kill_switch")
def kill_switch_saved(sender, instance, raw=False, **_signal):
    before = _kill_switch_before.pop(id(instance), None)
    if raw or instance.kill_switch == bool(before):
        return
    on = instance.kill_switch
    notify_after_commit(lambda: notices.kill_switch(on=on))


@receiver(post_save, sender=RiskDay, dispatch_uid="notifications.risk_halt")
def risk_day_saved(sender, instance, raw=False, update_fields=None, **_signal):
    """A count of 1 may be an earlier save's (another reason tripped since): `RiskHalt` says whether it was announced."""
    if raw or not update_fields or "limit_trips" not in update_fields:
        return
    for reason in notices.HALT_REASONS:
        if instance.limit_trips.get(reason) == 1:
            day, realized, at_risk = instance.date, instance.realized_pnl, instance.at_risk
            notify_after_commit(lambda reason=reason: notices.risk_halt(reason=reason, day=day, realized_pnl=realized,
                                                                        at_risk=at_risk))


@receiver(post_save, sender=FeedState, dispatch_uid="notifications.feed")
def feed_state_saved(sender, instance, raw=False, **_signal):
    """An outage is opened and closed in the feed's own transaction (one indexed read a save)."""
    if raw:
        return
    feed, venue, at = instance.feed, instance.venue, instance.updated_at or timezone.now()
    outage = FeedOutage.objects.filter(feed=feed, venue=venue, ended_at__isnull=True).first()
    if instance.state == DOWN and outage is None:
        error = instance.last_error or instance.detail
        FeedOutage.objects.create(feed=feed, venue=venue, started_at=at, error=error[:500])
        notify_after_commit(lambda: notices.feed_down(feed=feed, venue=venue, error=error, at=at))
    elif instance.state != DOWN and outage is not None:
        outage.ended_at = at
        outage.save(update_fields=["ended_at"])
        state, since = instance.state, outage.started_at
        notify_after_commit(lambda: notices.feed_back(feed=feed, venue=venue, state=state, down_since=since, at=at))


@receiver(post_save, sender=Trade, dispatch_uid="notifications.trade_closed")
def trade_saved(sender, instance, created=False, raw=False, update_fields=None, **_signal):
    if raw or instance.status != Trade.CLOSED or not (created or (update_fields and "status" in update_fields)):
        return
    if Subscription.TRADE_CLOSED not in subscribed_events():
        return
    figures = {"trade_id": instance.pk, "kind": instance.kind, "symbol": instance.symbol, "venues": instance.venues,
               "direction": instance.direction, "size_usd": instance.size_usd, "realized_pnl": instance.realized_pnl}
    notify_after_commit(lambda: notices.trade_closed(**figures))
