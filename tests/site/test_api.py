"""The REST API as scripts and the dashboard use it: who may read and write, validation, filters."""
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Controls, RiskLimits
from scanners.models import BinarySettings, Opportunity
from trifecta_site.models import ConfigChange

from ..execution.test_executors import T0, opportunity

pytestmark = pytest.mark.django_db

READS = ["/api/opportunities/", "/api/decisions/", "/api/trades/", "/api/positions/", "/api/portfolio/",
         "/api/stats/", "/api/risk/", "/api/agents/", "/api/best-pairs/", "/api/feeds/", "/api/scans/",
         "/api/controls/", "/api/limits/", "/api/thresholds/", "/api/thresholds/arbitrage/",
         "/api/thresholds/forex/", "/api/thresholds/binary/"]


def client_for(*, staff: bool, token: bool = True) -> APIClient:
    user = get_user_model().objects.create_user("staff" if staff else "viewer", password="pw-for-tests-1", is_staff=staff)
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    else:
        client.force_login(user)
    return client


@pytest.mark.parametrize("path", READS)
def test_nothing_is_readable_anonymously(path):
    assert APIClient().get(path).status_code in (401, 403)


def test_health_is_the_one_anonymous_endpoint():
    assert APIClient().get("/api/health/").status_code in (200, 503)


@pytest.mark.parametrize("path", READS)
def test_a_token_reads_every_endpoint(path):
    assert client_for(staff=False).get(path).status_code == 200


def test_lists_are_paginated_and_decimals_are_strings():
    opportunity("arbitrage", {"type": "cross_venue", "symbol": "BTC/USDT"})
    Opportunity.objects.update(net_pct=D("1.25"))
    body = client_for(staff=False).get("/api/opportunities/").json()
    assert body["count"] == 1 and "next" in body
    assert body["results"][0]["net_pct"] == "1.25000000" and body["results"][0]["decisions"] == []


def test_filters_and_their_bad_values():
    opportunity("arbitrage", {"symbol": "BTC/USDT"})
    opportunity("forex", {"symbol": "EUR/USD"})
    api = client_for(staff=False)
    assert [o["kind"] for o in api.get("/api/opportunities/?kind=forex").json()["results"]] == ["forex"]
    assert api.get(f"/api/opportunities/?since={T0 + 1}").json()["count"] == 0
    assert api.get(f"/api/opportunities/?since={T0}").json()["count"] == 2
    bad = api.get("/api/opportunities/?since=yesterday")
    assert bad.status_code == 400 and "since" in bad.json()
    assert api.get("/api/decisions/?opportunity=x").status_code == 400


def test_only_staff_change_controls_and_every_change_is_audited():
    viewer = client_for(staff=False)
    assert viewer.patch("/api/controls/", {"kill_switch": True}, format="json").status_code == 403
    staff = client_for(staff=True)
    response = staff.patch("/api/controls/", {"kill_switch": True}, format="json")
    assert response.status_code == 200 and response.json()["kill_switch"] is True
    assert Controls.get_solo().mode == "HALTED"
    change = ConfigChange.objects.get(field="kill_switch")
    assert (change.old_value, change.new_value, change.changed_by.username) == ("False", "True", "staff")


@pytest.mark.parametrize("path, data, field", [
    ("/api/limits/", {"max_trades_per_day": -1}, "max_trades_per_day"),
    ("/api/limits/", {"max_daily_loss": "-5"}, "max_daily_loss"),
    ("/api/limits/", {"day_timezone": "Mars/Olympus"}, "day_timezone"),
    ("/api/thresholds/binary/", {"auto_min_probability": "1.5"}, "auto_min_probability"),
    ("/api/thresholds/binary/", {"expiries": "sixty"}, "expiries"),
    ("/api/controls/", {"auto_execute": "maybe"}, "auto_execute"),
])
def test_bad_values_are_400_with_the_field_and_change_nothing(path, data, field):
    before = (RiskLimits.get_solo().max_trades_per_day, BinarySettings.get_solo().auto_min_probability)
    response = client_for(staff=True).patch(path, data, format="json")
    assert response.status_code == 400 and field in response.json()
    assert (RiskLimits.get_solo().max_trades_per_day, BinarySettings.get_solo().auto_min_probability) == before
    assert not ConfigChange.objects.exists()


def test_session_writes_need_the_csrf_token():
    user = get_user_model().objects.create_user("operator", password="pw-for-tests-1", is_staff=True)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    assert client.patch("/api/controls/", {"kill_switch": True}, format="json").status_code == 403
    assert Controls.get_solo().kill_switch is False
