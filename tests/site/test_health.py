from datetime import timedelta

import pytest
from django.utils import timezone

from scanners.models import FeedState
from trifecta_site.models import Heartbeat

pytestmark = pytest.mark.django_db


def healthy_desk(feed="replay"):
    now = timezone.now()
    Heartbeat.objects.create(process=Heartbeat.WORKER, hostname="w1", seen_at=now)
    Heartbeat.objects.create(process=Heartbeat.BEAT, hostname="b1", seen_at=now)
    FeedState.objects.create(feed=feed, venue="binance", state="ok", updated_at=now)


def test_health_is_open_to_anonymous_and_ok_when_everything_is_up(client, settings):
    settings.TRIFECTA_FEED = "replay"
    healthy_desk()
    response = client.get("/api/health/")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "broker", "worker", "beat", "feeds"}
    assert body["checks"]["feeds"]["venues"]["binance"]["status"] == "ok"


def test_health_says_nothing_sensitive(client, settings):
    healthy_desk()
    text = client.get("/api/health/").content.decode()
    assert settings.REDIS_URL not in text
    assert "redis://" not in text and "postgres://" not in text
    assert settings.SECRET_KEY not in text
    assert "w1" not in text  # no hostnames


@pytest.mark.parametrize("stale", ["worker", "beat"])
def test_health_is_503_when_a_heartbeat_is_stale(client, stale):
    healthy_desk()
    Heartbeat.objects.filter(process=stale).update(seen_at=timezone.now() - timedelta(minutes=5))
    response = client.get("/api/health/")
    assert response.status_code == 503
    assert response.json()["checks"][stale]["status"] == "down"


def test_health_is_503_before_any_heartbeat(client):
    response = client.get("/api/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["worker"]["detail"] == "no heartbeat yet"


def test_health_is_503_when_every_venue_is_down_and_200_when_one_is_degraded(client):
    healthy_desk()
    FeedState.objects.create(feed="replay", venue="kraken", state="degraded", updated_at=timezone.now())
    response = client.get("/api/health/")
    assert response.status_code == 200
    assert response.json()["checks"]["feeds"]["status"] == "degraded"
    FeedState.objects.update(state="down")
    assert client.get("/api/health/").status_code == 503


def test_health_treats_an_unpolled_feed_as_down(client):
    healthy_desk()
    FeedState.objects.update(updated_at=timezone.now() - timedelta(minutes=10))
    response = client.get("/api/health/")
    assert response.status_code == 503
    assert "not polled" in response.json()["checks"]["feeds"]["venues"]["binance"]["detail"]


def test_health_is_503_when_the_broker_is_down(client, monkeypatch):
    import redis

    from trifecta_site import health

    healthy_desk()
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.5)
    monkeypatch.setattr(health, "broker_client", lambda: unreachable)
    response = client.get("/api/health/")
    assert response.status_code == 503
    assert response.json()["checks"]["broker"]["status"] == "down"


def test_other_api_paths_need_authentication(client):
    assert client.get("/api/schema/").status_code in (401, 403)


def test_dashboard_needs_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")
