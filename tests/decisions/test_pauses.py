"""Pausing a pair or a route: the governor skips what a pause in force covers (`PAUSED`), an
expired or lifted pause skips nothing, creating and lifting are audited, the API refuses bad input."""
from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Decision, Pause, RiskDay
from decisions.pauses import active_pauses, create_pause, lift_pause, matching_pause
from execution.deciding import decide_opportunity
from trifecta_site.models import ConfigChange, one_configuration_reading

from .test_pipeline import arbitrage, auto_execute, feed  # noqa: F401 (feed: a fixture)
from ..execution.test_executors import opportunity, realism

pytestmark = pytest.mark.django_db
TRIANGLE = {"type": "triangular", "venue": "x", "path": [{"symbol": "BTC/USDT", "side": "buy"},
                                                       {"symbol": "ETH/BTC", "side": "buy"},
                                                       {"symbol": "ETH/USDT", "side": "sell"}]}


def operator(*codenames, name="operator"):
    user = get_user_model().objects.create_user(name, password="pw-for-tests-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)


def pause(scope, target, *, until=None, by=None, reason=""):
    row = Pause(scope=scope, target=target, until=until, reason=reason)
    row.full_clean(exclude=["created_by", "lifted_by"])
    return create_pause(pause=row, by=by)


def governor(opp):
    return Decision.objects.get(opportunity=opp, layer=Decision.GOVERNOR)


def test_a_paused_pair_is_skipped_with_its_reason_code_and_reserves_nothing(feed):
    auto_execute(True)
    realism("optimistic")
    held = pause("pair", "btc/usdt", reason="exchange incident")  # written as the desk names it: BTC/USDT
    opp = arbitrage()
    assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "skip"
    decided = governor(opp)
    assert decided.reasons == ["PAUSED"]
    assert decided.figures["pause"] == {"id": held.pk, "scope": "pair", "target": "BTC/USDT", "until": None}
    assert not RiskDay.objects.filter(trades__gt=0).exists()


def test_an_expired_pause_no_longer_skips(feed):
    auto_execute(True)
    realism("optimistic")
    held = pause("route", "xv:BTC/USDT:a>b", until=timezone.now() + timedelta(minutes=5))
    Pause.objects.filter(pk=held.pk).update(until=timezone.now() - timedelta(seconds=1))  # its five minutes are over
    opp = arbitrage()
    assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "execute"
    assert governor(opp).reasons == []


def test_a_lifted_pause_no_longer_skips_and_both_ends_are_audited(feed):
    auto_execute(True)
    realism("optimistic")
    user = operator("add_pause", "delete_pause")
    held = pause("route", "xv:BTC/USDT:a>b", by=user, reason="checking the venue")
    first = arbitrage()
    assert governor_reasons(first, feed) == ["PAUSED"]
    lift_pause(pause_id=held.pk, by=user)
    second = arbitrage()
    assert governor_reasons(second, feed) == []
    audit = list(ConfigChange.objects.filter(setting="pause").order_by("id").values_list(
        "field", "old_value", "new_value", "changed_by"))
    assert audit == [(f"#{held.pk} route xv:BTC/USDT:a>b", "", "paused until lifted (checking the venue)", user.pk),
                     (f"#{held.pk} route xv:BTC/USDT:a>b", "paused until lifted", "lifted", user.pk)]
    held.refresh_from_db()
    assert (held.lifted_by, held.created_by) == (user, user) and held.lifted_at is not None


def governor_reasons(opp, feed):
    decide_opportunity(opportunity_id=opp.pk, feed=feed)
    return governor(opp).reasons


def test_what_a_pair_and_a_route_cover():
    now = timezone.now()
    pair = pause("pair", "ETH/BTC")
    route = pause("route", "xv:BTC/USDT:a>b")
    rules = active_pauses()
    forex = opportunity("forex", {"venue": "oanda", "symbol": "EUR/USD"}, symbol="EUR/USD", route="fx:oanda:EUR/USD")
    triangle = opportunity("arbitrage", TRIANGLE, symbol="BTC/USDT>ETH/BTC>ETH/USDT",
                           route="tri:x:buy:BTC/USDT>buy:ETH/BTC>sell:ETH/USDT")
    reverse = opportunity("arbitrage", {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "b", "sell_venue": "a"},
                          symbol="BTC/USDT", route="xv:BTC/USDT:b>a")
    same = opportunity("arbitrage", {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "a", "sell_venue": "b"},
                       symbol="BTC/USDT", route="xv:BTC/USDT:a>b")
    assert matching_pause(forex, rules, at=now) is None
    assert matching_pause(triangle, rules, at=now).id == pair.pk  # ETH/BTC is one of its legs
    assert matching_pause(reverse, rules, at=now) is None  # the other direction is another route
    assert matching_pause(same, rules, at=now).id == route.pk


def test_pauses_are_read_from_the_configuration_copy_without_a_query_of_their_own():
    pause("pair", "EUR/USD")
    with one_configuration_reading():
        active_pauses()  # loads them once
    with CaptureQueriesContext(connection) as queries:
        with one_configuration_reading():  # the decide path's one read of the version
            assert [rule.target for rule in active_pauses()] == ["EUR/USD"]
    assert len(queries) == 1
    pause("pair", "GBP/USD")  # a change replaces the version: every process reloads
    assert sorted(rule.target for rule in active_pauses()) == ["EUR/USD", "GBP/USD"]


# --- the API and admin --------------------------------------------------------------------


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_api_pauses_lists_and_lifts():
    user = operator("add_pause", "delete_pause")
    client = api_as(user)
    made = client.post("/api/pauses/", {"scope": "pair", "target": "eur/usd", "minutes": 30, "reason": "NFP"}, format="json")
    assert made.status_code == 201, made.content
    body = made.json()
    assert (body["target"], body["in_force"], body["created_by"], body["reason"]) == ("EUR/USD", True, "operator", "NFP")
    until = Pause.objects.get().until
    assert timedelta(minutes=29) < until - timezone.now() <= timedelta(minutes=30)
    assert [p["id"] for p in client.get("/api/pauses/?in_force=true").json()["results"]] == [body["id"]]
    lifted = client.delete(f"/api/pauses/{body['id']}/")
    assert lifted.status_code == 200 and lifted.json()["in_force"] is False and lifted.json()["lifted_by"] == "operator"
    again = client.delete(f"/api/pauses/{body['id']}/")
    assert again.status_code == 409 and "was lifted at" in again.json()["detail"]
    assert client.get("/api/pauses/?in_force=true").json()["results"] == []
    assert client.delete("/api/pauses/999999/").status_code == 404
    assert ConfigChange.objects.filter(setting="pause").count() == 2


@pytest.mark.parametrize("body, field", [
    ({"target": "EUR/USD"}, "scope"),
    ({"scope": "pair"}, "target"),
    ({"scope": "pair", "target": "EURUSD"}, "target"),
    ({"scope": "pair", "target": "EUR/USD", "minutes": 0}, "minutes"),
    ({"scope": "pair", "target": "EUR/USD", "minutes": "soon"}, "minutes"),
    ({"scope": "pair", "target": "EUR/USD", "until": "yesterday"}, "until"),
    ({"scope": "pair", "target": "EUR/USD", "until": "2001-01-01T00:00:00Z"}, "until"),
    ({"scope": "pair", "target": "EUR/USD", "until": "2999-01-01T00:00:00Z", "minutes": 5}, "until"),
    ({"scope": "route", "target": "BTC/USDT"}, "target"),
    ({"scope": "route", "target": "xv:BTC/USDT:a"}, "target"),
    ({"scope": "week", "target": "EUR/USD"}, "scope"),
    ({"scope": "pair", "target": "EUR/USD", "reason": "a\x00b"}, "reason"),
])
def test_the_api_refuses_bad_input_with_a_400_naming_the_field(body, field):
    response = api_as(operator("add_pause")).post("/api/pauses/", body, format="json")
    assert response.status_code == 400 and field in response.json(), (response.status_code, response.content)
    assert not Pause.objects.exists() and not ConfigChange.objects.exists()


def test_pausing_and_lifting_need_their_permissions():
    held = pause("pair", "EUR/USD")
    viewer = api_as(operator("view_pause", name="viewer"))
    assert viewer.get("/api/pauses/").status_code == 200
    assert viewer.post("/api/pauses/", {"scope": "pair", "target": "GBP/USD"}, format="json").status_code == 403
    assert viewer.delete(f"/api/pauses/{held.pk}/").status_code == 403
    assert Pause.objects.count() == 1 and Pause.objects.get().lifted_at is None


def test_admin_adds_a_pause_and_lifts_it_with_the_audit(client):
    boss = get_user_model().objects.create_superuser("boss", password="pw-for-tests-1")
    client.force_login(boss)
    added = client.post("/admin/decisions/pause/add/", {"scope": "route", "target": "xv:BTC/USDT:a>b", "reason": "maintenance"})
    assert added.status_code == 302, added.content
    held = Pause.objects.get()
    assert (held.created_by, held.until, held.in_force(timezone.now())) == (boss, None, True)
    client.post("/admin/decisions/pause/", {"action": "lift", "_selected_action": [held.pk], "index": 0})
    held.refresh_from_db()
    assert held.lifted_by == boss
    assert list(ConfigChange.objects.filter(setting="pause").values_list("new_value", flat=True).order_by("id")) == [
        "paused until lifted (maintenance)", "lifted"]
    assert client.post(f"/admin/decisions/pause/{held.pk}/delete/", {"post": "yes"}).status_code == 403
    assert Pause.objects.count() == 1


def test_decimal_money_is_unaffected_by_pauses_elsewhere(feed):
    """A pause of another pair leaves the decision as it was: same size, executed."""
    auto_execute(True)
    realism("optimistic")
    pause("pair", "EUR/USD")
    opp = arbitrage()
    assert decide_opportunity(opportunity_id=opp.pk, feed=feed).verdict == "execute"
    assert Decision.objects.get(opportunity=opp, layer="risk").size_usd == D("2500")
