"""Notices of desk events to the operator's channels: which deliveries an event makes, and
sending one delivery (rate limit per channel, retries with exponential backoff).

The desk never waits on a channel: events are turned into `Delivery` rows after the desk's
transaction commits, and sending happens in the `notify` queue's worker (`tasks.deliver`).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from .models import Channel, Delivery, DeliveryAttempt, Subscription

logger = logging.getLogger(__name__)
DELIVER_TASK = "notifications.tasks.deliver"
RATE_WINDOW = timedelta(minutes=1)
SEND_TIMEOUT_S = 30  # Apprise's deadline for one send; a delivery marked sending longer than twice this was lost
MAX_ERROR_CHARS = 2000


@dataclass(frozen=True)
class Notice:
    """What happened, as a channel reads it, and the figures subscriptions test their thresholds on."""

    event: str
    title: str
    body: str
    data: dict = field(default_factory=dict)


def notify(notice: Notice) -> list[Delivery]:
    """One delivery for every active subscription (of an active channel) the notice passes,
    each handed to the worker once it is committed."""
    subscriptions = [subscription for subscription in
                     Subscription.objects.filter(event=notice.event, active=True, channel__active=True).select_related("channel")
                     if subscription.wants(notice.data)]
    if not subscriptions:
        return []
    with transaction.atomic():
        deliveries = [Delivery.objects.create(channel=subscription.channel, subscription=subscription, event=notice.event,
                                              title=notice.title[:200], body=notice.body, data=notice.data)
                      for subscription in subscriptions]
        for delivery in deliveries:
            transaction.on_commit(lambda pk=delivery.pk: enqueue(delivery_id=pk), robust=True)
    return deliveries


def notify_after_commit(build) -> None:
    """Called inside the desk's transaction: `build()` makes the notice (or None) once it
    commits, and nothing here can fail the desk (an error is logged; its delivery is lost)."""
    def run():
        try:
            notice = build()
            if notice is not None:
                notify(notice)
        except Exception:
            logger.exception("notification not recorded")
    transaction.on_commit(run, robust=True)


def enqueue(*, delivery_id: int, countdown: float | None = None) -> None:
    current_app.send_task(DELIVER_TASK, kwargs={"delivery_id": delivery_id}, countdown=countdown)


def send_test(*, channel: Channel) -> Delivery:
    """A test message to one channel (admin's action), through the same queue, limit and retries."""
    with transaction.atomic():
        delivery = Delivery.objects.create(channel=channel, event=Delivery.TEST, title="Trifecta test notification",
                                           body=f"This channel ({channel.name}) receives the desk's notifications.")
        transaction.on_commit(lambda: enqueue(delivery_id=delivery.pk), robust=True)
    return delivery


def retry_backoff_s(attempts: int) -> float:
    """Seconds before the next try after `attempts` failed ones: base × 2^(attempts − 1), at most an hour."""
    return min(3600.0, settings.NOTIFICATIONS_RETRY_BASE_S * 2 ** max(0, attempts - 1))


def send_message(*, url: str, title: str, body: str) -> tuple[bool, str]:
    """Send one message through Apprise: whether the service accepted it, and else why not."""
    import apprise  # here, not at the top: with its plugins some 50 MB, loaded only by the worker that sends

    notifier = apprise.Apprise(asset=apprise.AppriseAsset(storage_mode=apprise.PersistentStoreMode.MEMORY))
    if not notifier.add(url):
        return False, "Apprise does not understand the channel's URL"
    try:
        result = notifier.notify(body=body, title=title, timeout=SEND_TIMEOUT_S)
    except Exception as exc:  # a plugin's own fault: the delivery failed, the worker goes on
        return False, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS]
    if result:
        return True, ""
    said = [entry.message for service in result for attempt in service.attempts for entry in attempt]
    return False, ("; ".join(said) or f"Apprise: {result.status.name}")[:MAX_ERROR_CHARS]


def _seconds_until(moment: datetime, now: datetime) -> float:
    return max(0.05, (moment - now).total_seconds())


def send_delivery(*, delivery_id: int) -> float | None:
    """Try to send one delivery now: seconds until it is to be tried again (its channel's rate
    limit is full, or it failed and has tries left), or None when nothing more is to do.

    The channel's row is locked while a slot of its minute is taken, so the limit holds however
    many workers send; the network call itself runs with no lock held. A redelivered task finds
    the delivery sent, given up, or being sent by another worker, and does nothing."""
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.select_for_update().filter(pk=delivery_id).first()
        if delivery is None or delivery.status in (Delivery.SENT, Delivery.FAILED):
            return None
        if delivery.next_try_at is not None and delivery.next_try_at > now:
            return None if delivery.status == Delivery.SENDING else _seconds_until(delivery.next_try_at, now)
        channel = Channel.objects.select_for_update().get(pk=delivery.channel_id)
        if not channel.active:
            delivery.status, delivery.last_error, delivery.next_try_at = Delivery.FAILED, "channel switched off", None
            delivery.save(update_fields=["status", "last_error", "next_try_at"])
            return None
        recent = list(DeliveryAttempt.objects.filter(channel=channel, started_at__gt=now - RATE_WINDOW)
                      .order_by("-started_at").values_list("started_at", flat=True)[:channel.max_per_minute])
        if len(recent) >= channel.max_per_minute:  # full: wait until the oldest of them leaves the minute
            delivery.status, delivery.next_try_at = Delivery.WAITING, recent[-1] + RATE_WINDOW
            delivery.save(update_fields=["status", "next_try_at"])
            return _seconds_until(delivery.next_try_at, now)
        attempt = DeliveryAttempt.objects.create(delivery=delivery, channel=channel, started_at=now)
        delivery.status, delivery.attempts = Delivery.SENDING, delivery.attempts + 1
        delivery.next_try_at = now + timedelta(seconds=2 * SEND_TIMEOUT_S)
        delivery.save(update_fields=["status", "attempts", "next_try_at"])
    ok, error = send_message(url=channel.url, title=delivery.title, body=delivery.body)
    finished = timezone.now()
    DeliveryAttempt.objects.filter(pk=attempt.pk).update(finished_at=finished, ok=ok, error=error)
    if ok:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.SENT, sent_at=finished, next_try_at=None)
        return None
    if delivery.attempts >= settings.NOTIFICATIONS_MAX_ATTEMPTS:
        Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.FAILED, last_error=error, next_try_at=None)
        logger.warning("notification %s to channel %s given up after %d attempts: %s",
                       delivery.pk, channel.name, delivery.attempts, error)
        return None
    delay = retry_backoff_s(delivery.attempts)
    Delivery.objects.filter(pk=delivery.pk).update(status=Delivery.RETRYING, last_error=error,
                                                   next_try_at=finished + timedelta(seconds=delay))
    return delay


def pending_delivery_ids(*, now: datetime, lost_after_s: int = 120, limit: int = 500) -> list[int]:
    """Deliveries whose message the broker may have lost: queued, or due, for longer than `lost_after_s`."""
    before = now - timedelta(seconds=lost_after_s)
    queued = Delivery.objects.filter(status=Delivery.QUEUED, created_at__lt=before, next_try_at__isnull=True)
    due = Delivery.objects.filter(status__in=[Delivery.QUEUED, Delivery.WAITING, Delivery.RETRYING, Delivery.SENDING],
                                  next_try_at__lt=before)
    return list((queued | due).order_by("id").values_list("id", flat=True)[:limit])


def retry_now(*, deliveries) -> int:
    """Give failed deliveries a fresh set of tries, now (admin's action)."""
    ids = list(deliveries.filter(status=Delivery.FAILED).values_list("id", flat=True))
    with transaction.atomic():
        Delivery.objects.filter(pk__in=ids).update(status=Delivery.QUEUED, attempts=0, next_try_at=None)
        for pk in ids:
            transaction.on_commit(lambda pk=pk: enqueue(delivery_id=pk), robust=True)
    return len(ids)


def money(value) -> str:
    """A USD amount as a person reads it: sign, thousands separators, cents."""
    amount = Decimal(value or 0)
    return f"{'-' if amount < 0 else ''}${abs(amount):,.2f}"
