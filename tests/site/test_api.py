"""The REST API as scripts and the dashboard use it: who may read and write, validation, filters."""
from datetime import datetime, timezone as dt_timezone
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Controls, RiskLimits
from scanners.models import BinarySettings, Opportunity
from trifecta_site.models import ConfigChange
from trifecta_site.pagination import forget_counts

from ..execution.test_executors import T0, opportunity

pytestmark = pytest.mark.django_db

READS = ["/api/opportunities/", "/api/decisions/", "/api/trades/", "/api/positions/", "/api/portfolio/",
         "/api/stats/", "/api/risk/", "/api/agents/", "/api/best-pairs/", "/api/feeds/", "/api/scans/",
         "/api/controls/", "/api/limits/", "/api/thresholds/", "/api/thresholds/arbitrage/",
         "/api/thresholds/forex/", "/api/thresholds/binary/"]


def client_for(*, staff: bool, token: bool = True) -> APIClient:
    user = get_user_model().objects.create_user("staff" if staff else "viewer", password="pw-for-tests-1", is_staff=staff)
    if staff:  # an operator: staff holding the change permissions admin asks for (tests/site/test_permissions.py)
        user.user_permissions.set(Permission.objects.filter(codename__startswith="change_"))
    client = APIClient()
    if token:
        client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    else:
        client.force_login(user)
    return client


@pytest.mark.parametrize("path", READS)
def test_nothing_is_readable_anonymously(path):
    assert APIClient().get(path).status_code in (401, 403)


def test_a_token_is_its_users_and_only_while_the_user_is_active():
    viewer = client_for(staff=False)
    assert viewer.get("/api/stats/").status_code == 200
    token = Token.objects.get()
    assert viewer.get("/api/stats/").wsgi_request.user == token.user
    get_user_model().objects.filter(pk=token.user_id).update(is_active=False)
    response = viewer.get("/api/stats/")
    assert response.status_code == 401 and response.json() == {"detail": "User inactive or deleted."}
    viewer.credentials(HTTP_AUTHORIZATION=f"Token {token.key[:-1]}x")
    response = viewer.get("/api/stats/")
    assert response.status_code == 401 and response.json() == {"detail": "Invalid token."}


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
    for past_any_column in ("111372409373866556968025135517106438144", "\u00b2", "-99999999999999999999"):
        for path in (f"/api/decisions/?opportunity={past_any_column}", f"/api/portfolio/?since={past_any_column}"):
            bad = api.get(path)
            assert bad.status_code == 400 and set(bad.json()) == {path.split("?")[1].split("=")[0]}, path
    assert api.get("/api/decisions/?opportunity=-1").json()["count"] == 0


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


LISTS = ["/api/opportunities/", "/api/decisions/", "/api/trades/", "/api/positions/", "/api/agents/",
         "/api/feeds/", "/api/scans/"]


def populate(n: int) -> None:
    """n of everything a list shows, with the related rows each row carries."""
    from django.utils import timezone

    from decisions.models import AgentState, Decision
    from execution.models import Fill, Position, Trade
    from execution.portfolio import current_portfolio
    from scanners.models import FeedState, ScanRun

    portfolio, now = current_portfolio(), timezone.now()
    for k in range(n):
        opp = opportunity("forex", {"symbol": "EUR/USD"}, route=f"r{n}-{k}")
        for layer in ("agent", "risk", "governor"):
            Decision.objects.create(opportunity=opp, layer=layer, verdict="x", decided_at=now, market_ts=T0)
        trade = Trade.objects.create(portfolio=portfolio, opportunity=opp, kind="forex", route=opp.route, symbol="EUR/USD",
                                     status="open", opened_ts=T0, opened_at=now)
        for leg in (1, 2):
            Fill.objects.create(trade=trade, leg=leg, venue="v", symbol="EUR/USD", side="buy", requested=1, quantity=1, filled_ts=T0)
        Position.objects.create(trade=trade, kind="forex", venue="v", symbol="EUR/USD", direction="BUY", quantity=1,
                                entry_price=1, opened_ts=T0, checked_ts=T0)
        AgentState.objects.create(agent="forex", key=f"k{n}-{k}")
        FeedState.objects.create(feed="f", venue=f"v{n}-{k}", state="ok", updated_at=now)
        ScanRun.objects.create(kind="forex", started_at=now, market_ts=T0, duration_ms=1)


@pytest.mark.parametrize("path", LISTS)
def test_list_endpoints_query_the_same_whatever_the_page_holds(path):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    api = client_for(staff=False)
    counts = []
    for n in (2, 10):
        populate(n)
        forget_counts()  # each read counts its rows (a kept count would save the second a query)
        with CaptureQueriesContext(connection) as queries:
            assert api.get(path).status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1], f"{path}: {counts[0]} queries for a few rows, {counts[1]} for more (N+1)"


@pytest.mark.parametrize("path", LISTS)
def test_list_pages_are_what_the_serializer_makes_of_the_objects_in_order(path):
    """A page's rows, nested lists included (prefetched in the related model's order), as DRF
    serializes the list's own queryset and its JSON renderer writes it."""
    import json

    from django.urls import resolve
    from rest_framework.renderers import JSONRenderer

    populate(3)
    from execution.models import Trade

    from decisions.models import Decision

    def at(microsecond: int) -> datetime:  # PostgreSQL writes .5 and .12 for these, and no fraction for 0
        return datetime(2026, 12, 4, 13, 59, 5, microsecond, tzinfo=dt_timezone.utc)

    Trade.objects.update(realized_pnl=D("-1.5"), size_usd=D("1234.5"), edge={"fees": "0.1", "nested": [1, None]},
                         opened_at=at(0))
    Opportunity.objects.update(confidence=D("0.75"), figures={"signal": "BUY", "confidence": 0.75, "note": "é\u2028日本"},
                               detected_at=at(120000))
    Decision.objects.update(decided_at=at(500000))
    api = client_for(staff=False)
    page = api.get(path).json()["results"]
    view = resolve(path).func.cls()
    view.request = type("Request", (), {"query_params": {}})()
    serializer = view.get_serializer_class()
    ordered = list(view.get_queryset()[:len(page)])
    assert len(page) == len(ordered) > 0
    assert page == json.loads(JSONRenderer().render(serializer(ordered, many=True).data))


def test_one_opportunity_or_trade_carries_its_decision_trail_or_fills_as_in_the_list():
    from execution.models import Trade

    populate(1)
    api = client_for(staff=False)
    opportunity, trade = Opportunity.objects.get(), Trade.objects.get()
    listed = api.get("/api/opportunities/").json()["results"][0]
    assert api.get(f"/api/opportunities/{opportunity.pk}/").json() == listed and len(listed["decisions"]) == 3
    listed = api.get("/api/trades/").json()["results"][0]
    assert api.get(f"/api/trades/{trade.pk}/").json() == listed and [f["leg"] for f in listed["fills"]] == [1, 2]


def test_a_list_counts_its_rows_at_most_once_a_moment_and_its_rows_are_always_fresh(settings):
    settings.LIST_COUNT_MAX_AGE_S = 60
    api = client_for(staff=False)
    opportunity("arbitrage", {"symbol": "BTC/USDT"})
    assert api.get("/api/opportunities/").json()["count"] == 1
    opportunity("forex", {"symbol": "EUR/USD"})
    body = api.get("/api/opportunities/").json()
    assert body["count"] == 1 and len(body["results"]) == 2  # the kept count; the rows as they are now
    assert api.get("/api/opportunities/?kind=forex").json()["count"] == 1  # another query counts for itself
    settings.LIST_COUNT_MAX_AGE_S = 0
    assert api.get("/api/opportunities/").json()["count"] == 2
    settings.LIST_COUNT_MAX_AGE_S = 60
    for _ in range(50):
        opportunity("forex", {"symbol": "EUR/USD"})
    assert len(api.get("/api/opportunities/?page=2").json()["results"]) == 2  # beyond the kept count: counted again
    assert api.get("/api/opportunities/?page=3").status_code == 404
    assert api.get("/api/opportunities/?page=3765812875021776322560").status_code == 404


def test_a_client_over_its_rate_gets_429_until_the_window_ends(monkeypatch):
    import uuid

    from trifecta_site.throttling import UserRateThrottle

    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min", "anon": "3/min"})
    monkeypatch.setattr(UserRateThrottle, "cache_format", f"test-{uuid.uuid4().hex}-%(scope)s-%(ident)s")
    api = client_for(staff=False)
    assert [api.get("/api/feeds/").status_code for _ in range(3)] == [200, 200, 200]
    refused = api.get("/api/feeds/")
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60


def test_the_wsgi_application_serves_the_api_and_the_dashboards_static_files():
    """The production HTTP tier (gunicorn) runs `trifecta_site.wsgi`; the embedded one runs ASGI."""
    from wsgiref.util import setup_testing_defaults

    from trifecta_site.wsgi import application

    token = Token.objects.create(user=get_user_model().objects.create_user("script", password="pw-for-tests-1")).key

    def get(path, **headers):
        environ, answer = {"PATH_INFO": path, "HTTP_HOST": "localhost", **headers}, {}
        setup_testing_defaults(environ)
        body = b"".join(application(environ, lambda status, _headers: answer.setdefault("status", status)))
        return int(answer["status"].split()[0]), body

    from django.core import signals
    from django.db import close_old_connections

    for signal in (signals.request_started, signals.request_finished):  # as Django's test client does:
        signal.disconnect(close_old_connections)  # the test's transaction holds the connection
    try:
        status, body = get("/api/feeds/", HTTP_AUTHORIZATION=f"Token {token}")
        assert status == 200 and b'"results"' in body
        assert get("/api/feeds/")[0] in (401, 403)
        assert get("/static/trifecta/desk.js")[0] == 200
    finally:
        for signal in (signals.request_started, signals.request_finished):
            signal.connect(close_old_connections)


def test_a_nul_character_in_a_filter_is_a_400():
    response = client_for(staff=False).get("/api/decisions/?layer=%00")
    assert response.status_code == 400 and "layer" in response.json()


def test_the_api_docs_load_nothing_from_a_cdn(client):
    client.force_login(get_user_model().objects.create_user("reader", password="pw-for-tests-1"))
    page = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in page and "cdn" not in page.lower() and "https://" not in page
