"""The operator subscribes a channel in admin; its URL is a secret (masked in lists, never shown
again); deliveries and their failures are read there, and failed ones queued again."""
import pytest
from django.contrib.auth import get_user_model

from notifications.models import Channel, Delivery, DeliveryAttempt, Subscription

pytestmark = pytest.mark.django_db
TELEGRAM = "tgram://123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ/987654321"
BOT_TOKEN_PART = "AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQ"


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    return client


def channel_form(**fields) -> dict:
    return {"name": "ops telegram", "url": TELEGRAM, "max_per_minute": "5", "active": "on",
            "subscriptions-TOTAL_FORMS": "2", "subscriptions-INITIAL_FORMS": "0",
            "subscriptions-0-event": "kill_switch", "subscriptions-0-min_outage_s": "0", "subscriptions-0-active": "on",
            "subscriptions-1-event": "trade_closed", "subscriptions-1-min_outage_s": "0",
            "subscriptions-1-min_size_usd": "5000", "subscriptions-1-active": "on", **fields}


def test_an_operator_subscribes_a_channel_and_its_url_stays_secret(operator):
    response = operator.post("/admin/notifications/channel/add/", channel_form())
    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else response
    channel = Channel.objects.get()
    assert channel.url == TELEGRAM
    assert sorted(channel.subscriptions.values_list("event", "min_size_usd")) == [("kill_switch", None), ("trade_closed", 5000)]

    listing = operator.get("/admin/notifications/channel/").content.decode()
    assert "ops telegram" in listing and "tgram://1...Q/987654321/" in listing and BOT_TOKEN_PART not in listing
    page = operator.get(f"/admin/notifications/channel/{channel.pk}/change/").content.decode()
    assert BOT_TOKEN_PART not in page

    changed = channel_form(url="", max_per_minute="3", **{"subscriptions-TOTAL_FORMS": "0"})
    assert operator.post(f"/admin/notifications/channel/{channel.pk}/change/", changed).status_code == 302
    channel.refresh_from_db()
    assert channel.url == TELEGRAM and channel.max_per_minute == 3  # left empty: the saved URL stays


def test_a_url_apprise_does_not_understand_is_refused_with_a_message(operator):
    response = operator.post("/admin/notifications/channel/add/", channel_form(url="nonsense://x"))
    assert response.status_code == 200 and "url" in response.context["adminform"].form.errors
    assert not Channel.objects.exists()


def test_failures_show_in_admin_and_failed_deliveries_can_be_retried(operator, django_capture_on_commit_callbacks):
    channel = Channel.objects.create(name="hook", url="json://127.0.0.1:9/hook")
    subscription = Subscription.objects.create(channel=channel, event=Subscription.KILL_SWITCH)
    failed = Delivery.objects.create(channel=channel, subscription=subscription, event=subscription.event, title="Kill switch ON",
                                     body="b", status=Delivery.FAILED, attempts=6, last_error="error=500.")
    DeliveryAttempt.objects.create(delivery=failed, channel=channel, started_at=failed.created_at, ok=False, error="error=500.")
    listing = operator.get("/admin/notifications/delivery/?status=failed").content.decode()
    assert "Kill switch ON" in listing and "error=500." in listing and "json://127.0.0.1:9/hook" not in listing
    assert "error=500." in operator.get(f"/admin/notifications/delivery/{failed.pk}/change/").content.decode()
    with django_capture_on_commit_callbacks() as queued:
        response = operator.post("/admin/notifications/delivery/", {"action": "retry_failed", "_selected_action": [failed.pk]})
    assert response.status_code == 302 and len(queued) == 1
    failed.refresh_from_db()
    assert failed.status == Delivery.QUEUED and failed.attempts == 0


def test_a_test_message_is_queued_for_the_chosen_channel(operator, django_capture_on_commit_callbacks):
    channel = Channel.objects.create(name="hook", url="json://127.0.0.1:9/hook")
    with django_capture_on_commit_callbacks() as queued:
        response = operator.post("/admin/notifications/channel/", {"action": "send_test_message", "_selected_action": [channel.pk]})
    assert response.status_code == 302 and len(queued) == 1
    [delivery] = Delivery.objects.all()
    assert delivery.channel == channel and delivery.event == Delivery.TEST and delivery.status == Delivery.QUEUED
