"""Sending a delivery through the real task and Apprise to a real HTTP receiver on loopback:
delivered, delivered again after a failure (backoff), given up with its error, rate-limited."""
import json
import subprocess
import sys
from datetime import timedelta

import pytest
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.db import transaction

from notifications import services, tasks
from notifications.models import Channel, Delivery, DeliveryAttempt, Subscription

from .receiver import Receiver

pytestmark = pytest.mark.django_db


def channel(url: str, per_minute: int = 10) -> Channel:
    ch = Channel.objects.create(name="ops", url=url, max_per_minute=per_minute)
    Subscription.objects.create(channel=ch, event=Subscription.KILL_SWITCH)
    return ch


def notice(title: str = "Kill switch ON: the desk opens no new trades") -> services.Notice:
    return services.Notice(event=Subscription.KILL_SWITCH, title=title, body="operator turned it on", data={"on": True})


def test_an_event_s_delivery_is_queued_on_commit_and_received_by_the_webhook(receiver, notify_queue, django_capture_on_commit_callbacks):
    channel(receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        with transaction.atomic():
            [delivery] = services.notify(notice())
            assert notify_queue() == []  # nothing leaves before the commit
    [message] = notify_queue()
    headers = json.loads(message)["headers"]
    assert headers["task"] == "notifications.tasks.deliver" and str(delivery.pk) in headers["kwargsrepr"]

    assert tasks.deliver(delivery_id=delivery.pk) is None
    delivery.refresh_from_db()
    assert delivery.status == Delivery.SENT and delivery.attempts == 1 and delivery.sent_at is not None
    assert receiver.delivered() == [{"version": "1.0", "title": "Kill switch ON: the desk opens no new trades",
                                     "message": "operator turned it on", "attachments": [], "type": "info"}]
    assert tasks.deliver(delivery_id=delivery.pk) is None  # a redelivered task sends nothing twice
    assert len(receiver.received) == 1


def test_a_receiver_that_fails_once_gets_it_on_the_retry_after_a_backoff(settings):
    settings.NOTIFICATIONS_RETRY_BASE_S = 0  # due again at once: the backoff's growth is asserted below
    with Receiver(answers=[500]) as receiver:
        channel(receiver.url)
        [delivery] = services.notify(notice())
        with pytest.raises(Retry):
            tasks.deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == Delivery.RETRYING and delivery.attempts == 1 and "500" in delivery.last_error
        assert receiver.delivered() == []
        tasks.deliver(delivery_id=delivery.pk)
        delivery.refresh_from_db()
        assert delivery.status == Delivery.SENT and delivery.attempts == 2
        assert [r["status"] for r in receiver.received] == [500, 200]
        assert receiver.delivered()[0]["title"] == "Kill switch ON: the desk opens no new trades"
    tries = list(DeliveryAttempt.objects.filter(delivery=delivery))
    assert [t.ok for t in tries] == [False, True] and "500" in tries[0].error and tries[1].error == ""


def test_retries_back_off_exponentially_and_give_up_with_the_error_visible(settings):
    settings.NOTIFICATIONS_RETRY_BASE_S, settings.NOTIFICATIONS_MAX_ATTEMPTS = 30, 3
    assert [services.retry_backoff_s(n) for n in (1, 2, 3, 10)] == [30, 60, 120, 3600]
    with Receiver(answers=[503, 503, 503]) as receiver:
        channel(receiver.url)
        [delivery] = services.notify(notice())
        for attempt in (1, 2):
            with pytest.raises(Retry):
                tasks.deliver(delivery_id=delivery.pk)
            delivery.refresh_from_db()
            last = DeliveryAttempt.objects.filter(delivery=delivery).last()
            assert delivery.next_try_at - last.finished_at == timedelta(seconds=30 * 2 ** (attempt - 1))
            with pytest.raises(Retry):  # not yet due: nothing is sent, the task waits for it
                tasks.deliver(delivery_id=delivery.pk)
            assert len(receiver.received) == attempt
            Delivery.objects.filter(pk=delivery.pk).update(next_try_at=last.finished_at)  # the backoff has passed
        tasks.deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.FAILED and delivery.attempts == 3 and "503" in delivery.last_error
    assert len(receiver.received) == 3


def test_a_channel_sends_at_most_its_limit_a_minute_and_the_rest_waits(receiver):
    ch = channel(receiver.url, per_minute=2)
    deliveries = [services.notify(notice(f"event {n}"))[0] for n in range(3)]
    for delivery in deliveries[:2]:
        tasks.deliver(delivery_id=delivery.pk)
    with pytest.raises(Retry):
        tasks.deliver(delivery_id=deliveries[2].pk)
    third = Delivery.objects.get(pk=deliveries[2].pk)
    first_try = DeliveryAttempt.objects.filter(channel=ch).order_by("started_at").first()
    assert third.status == Delivery.WAITING and third.attempts == 0
    assert third.next_try_at == first_try.started_at + timedelta(minutes=1)  # when the minute has room again
    assert [b["title"] for b in receiver.delivered()] == ["event 0", "event 1"]

    DeliveryAttempt.objects.filter(pk=first_try.pk).update(started_at=first_try.started_at - timedelta(seconds=61))
    Delivery.objects.filter(pk=third.pk).update(next_try_at=first_try.started_at - timedelta(seconds=1))
    tasks.deliver(delivery_id=third.pk)
    assert Delivery.objects.get(pk=third.pk).status == Delivery.SENT
    assert [b["title"] for b in receiver.delivered()] == ["event 0", "event 1", "event 2"]


def test_the_limit_is_per_channel(receiver):
    busy, other = channel(receiver.url, per_minute=1), Channel.objects.create(name="other", url=receiver.url, max_per_minute=1)
    Subscription.objects.create(channel=other, event=Subscription.KILL_SWITCH)
    first, second = services.notify(notice("one")), services.notify(notice("two"))
    assert {d.channel for d in first} == {busy, other}
    for delivery in first:
        tasks.deliver(delivery_id=delivery.pk)
    for delivery in second:
        with pytest.raises(Retry):
            tasks.deliver(delivery_id=delivery.pk)
    assert sorted(b["title"] for b in receiver.delivered()) == ["one", "one"]
    assert set(Delivery.objects.filter(title="two").values_list("status", flat=True)) == {Delivery.WAITING}


def test_a_switched_off_channel_or_subscription_gets_nothing(receiver):
    ch = channel(receiver.url)
    Subscription.objects.filter(channel=ch).update(active=False)
    assert services.notify(notice()) == []
    Subscription.objects.filter(channel=ch).update(active=True)
    [delivery] = services.notify(notice())
    Channel.objects.filter(pk=ch.pk).update(active=False)
    tasks.deliver(delivery_id=delivery.pk)
    delivery.refresh_from_db()
    assert delivery.status == Delivery.FAILED and delivery.last_error == "channel switched off"
    assert receiver.received == []


def test_a_lost_message_is_queued_again_from_the_database(receiver, notify_queue, django_capture_on_commit_callbacks):
    channel(receiver.url)
    with django_capture_on_commit_callbacks(execute=True):
        [delivery] = services.notify(notice())
    assert len(notify_queue()) == 1  # the message the broker may lose
    now = delivery.created_at
    assert services.pending_delivery_ids(now=now + timedelta(seconds=60)) == []
    assert services.pending_delivery_ids(now=now + timedelta(seconds=121)) == [delivery.pk]
    tasks.deliver(delivery_id=delivery.pk)
    assert services.pending_delivery_ids(now=now + timedelta(seconds=121)) == []


def test_desk_processes_do_not_load_apprise_until_they_send():
    """Apprise and its plugins are tens of MB: loading every task module and the admin leaves them out."""
    code = ("import django, sys; django.setup();"
            "from trifecta_site.celery import app; app.loader.import_default_modules();"
            "import notifications.admin, notifications.receivers, notifications.tasks;"
            "print('apprise' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=django_settings.BASE_DIR,
                         env={"DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "PATH": "/usr/bin:/bin",
                              "TRIFECTA_VAR_DIR": str(django_settings.VAR_DIR), "REDIS_URL": django_settings.REDIS_URL})
    assert out.stdout.strip() == "False", out.stderr
