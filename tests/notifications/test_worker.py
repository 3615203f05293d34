"""A real Celery worker on the `notify` queue delivers an operator's notice to a webhook on
loopback, and delivers it again after the webhook failed once (the retry's backoff honoured)."""
from datetime import timedelta

import pytest
from django.conf import settings

from decisions.models import Controls
from notifications.models import Channel, Delivery, DeliveryAttempt, Subscription
from tests.integration import processes
from tests.waiting import wait_for

from .receiver import Receiver

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def notify_worker(django_db_setup, tmp_path):
    log = tmp_path / "notify-worker.log"
    worker = processes.start_worker(processes.desk_env(NOTIFICATIONS_RETRY_BASE_S="0.5"), log, queues="notify")
    try:
        yield log
    finally:
        processes.stop(worker)
        processes.wait_for_idle_queues(settings.CELERY_BROKER_URL, queues=("notify",), timeout_s=10)


def test_the_kill_switch_reaches_a_webhook_that_failed_once(notify_worker):
    with Receiver(answers=[500]) as receiver:
        channel = Channel.objects.create(name="webhook", url=receiver.url, max_per_minute=5)
        Subscription.objects.create(channel=channel, event=Subscription.KILL_SWITCH)
        controls = Controls.get_solo()
        controls.kill_switch = True
        controls.save()  # committed at once: the notice is written and queued on commit

        delivery = wait_for(lambda: Delivery.objects.filter(channel=channel, status=Delivery.SENT).first(), 60,
                            "the notice delivered after one failure", log=notify_worker)
        assert delivery.attempts == 2 and delivery.event == Subscription.KILL_SWITCH
        assert [r["status"] for r in receiver.received] == [500, 200]
        assert receiver.delivered()[0]["title"] == "Kill switch ON: the desk opens no new trades"
    failed, sent = DeliveryAttempt.objects.filter(delivery=delivery).order_by("started_at")
    assert not failed.ok and "500" in failed.error and sent.ok
    assert sent.started_at >= failed.finished_at + timedelta(seconds=0.5)  # the backoff was waited out
    assert "Traceback" not in notify_worker.read_text()
