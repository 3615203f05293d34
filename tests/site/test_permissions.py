"""One permission model for admin and the API, shown with four users on every write.

The users: signed in but not staff; staff holding every view permission and nothing else;
staff with no permission at all; a superuser. Every API write (taken from the URL
resolver, so a new endpoint is covered the day it is added) and every admin page or
action that changes something must let through exactly those who hold the model
permission admin asks for: a staff flag alone is not enough (issue 31, findings 2, 3, 5).
"""
import pytest
from django.apps import apps
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.test import Client, RequestFactory
from django.urls import resolve
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import AgentState, Controls, RiskLimits
from execution.models import Portfolio
from execution.portfolio import current_portfolio
from scanners.models import ArbitrageSettings, BinarySettings, FeedSettings, ForexSettings
from tests.reliability.test_security import PATHS, allowed_api_methods, kind_of
from trifecta_site.admin import SingletonAdmin

pytestmark = pytest.mark.django_db

ROLES = ("not_staff", "staff_view_only", "staff_no_perms", "superuser")
SINGLETONS = (Controls, RiskLimits, ArbitrageSettings, ForexSettings, BinarySettings, FeedSettings)


def make_user(role: str):
    User = get_user_model()
    if role == "superuser":
        return User.objects.create_superuser(role, password="pw-for-tests-1")
    user = User.objects.create_user(role, password="pw-for-tests-1", is_staff=role.startswith("staff"))
    if role == "staff_view_only":
        user.user_permissions.set(Permission.objects.filter(codename__startswith="view_"))
    return User.objects.get(pk=user.pk)  # no permission cache


@pytest.fixture
def users():
    return {role: make_user(role) for role in ROLES}


def api_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.get_or_create(user=user)[0].key}")
    return client


def write_endpoints() -> list[tuple[str, str]]:
    """(method, path) for every API path that accepts a write."""
    found = []
    for path in PATHS:
        if kind_of(path) == "api":
            found += [(method, path) for method in ("post", "put", "patch", "delete") if method in allowed_api_methods(path)]
    return found


def model_of(path: str):
    return resolve(path).func.cls.model


def snapshot():
    return [(model, model.objects.values().first()) for model in SINGLETONS]


def test_every_api_write_needs_the_model_permission_admin_asks_for(users):
    endpoints = write_endpoints()
    assert {path for _, path in endpoints} >= {"/api/controls/", "/api/limits/", "/api/thresholds/arbitrage/",
                                               "/api/thresholds/forex/", "/api/thresholds/binary/"}
    for method, path in endpoints:
        before = snapshot()
        for role in ("not_staff", "staff_view_only", "staff_no_perms"):
            response = getattr(api_client(users[role]), method)(path, {"kill_switch": True, "auto_execute": True,
                                                                        "max_trades_per_day": 100000}, format="json")
            assert response.status_code == 403, (role, method, path, response.status_code)
        assert snapshot() == before  # nothing changed by any of them
        superuser = api_client(users["superuser"])
        current = superuser.get(path).json()
        status = getattr(superuser, method)(path, current if method == "put" else {}, format="json").status_code
        if getattr(resolve(path).func.cls, "model", None) in SINGLETONS:
            assert status == 200, (method, path)
        else:  # a pause or a close: an empty body or a sample id is refused as such (400, 404), never as a permission
            assert status in (400, 404), (method, path, status)


def test_staff_holding_exactly_the_change_permission_may_write_that_model_and_no_other():
    user = make_user("staff_no_perms")
    user.user_permissions.add(Permission.objects.get(codename="change_controls"))
    client = api_client(get_user_model().objects.get(pk=user.pk))
    assert client.patch("/api/controls/", {"kill_switch": True}, format="json").status_code == 200
    assert Controls.get_solo().kill_switch
    assert client.patch("/api/limits/", {"max_trades_per_day": 1}, format="json").status_code == 403
    assert RiskLimits.get_solo().max_trades_per_day != 1


def test_reads_stay_open_to_every_signed_in_user(users):
    for role in ROLES:
        client = api_client(users[role])
        for path in ("/api/controls/", "/api/limits/", "/api/thresholds/", "/api/thresholds/binary/"):
            assert client.get(path).status_code == 200, (role, path)


# --- admin -----------------------------------------------------------------------------------


def page_client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def admin_url(model, view: str, *args) -> str:
    from django.urls import reverse

    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


def registered_model_admins():
    for model in apps.get_models():
        model_admin = admin.site.get_model_admin(model) if admin.site.is_registered(model) else None
        if model_admin is not None:
            yield model, model_admin


SINGLETON_ADMINS = [model for model, model_admin in registered_model_admins() if isinstance(model_admin, SingletonAdmin)]


def test_every_custom_admin_action_declares_the_permission_it_needs():
    """A new action without `@admin.action(permissions=[...])` fails here before it ships."""
    custom = []
    for model, model_admin in registered_model_admins():
        for action in model_admin.actions or ():
            func = getattr(model_admin, action) if isinstance(action, str) else action
            custom.append((model.__name__, func.__name__))
            assert getattr(func, "allowed_permissions", ()), f"{model.__name__}.{func.__name__} checks no permission"
    assert ("AgentState", "reset_agents") in custom


@pytest.mark.parametrize("role, offered", [("staff_view_only", False), ("staff_no_perms", False), ("superuser", True)])
def test_admin_offers_the_reset_action_only_to_those_who_may_delete(users, role, offered):
    request = RequestFactory().get("/admin/decisions/agentstate/")
    request.user = users[role]
    assert ("reset_agents" in admin.site.get_model_admin(AgentState).get_actions(request)) is offered


@pytest.mark.parametrize("role", ROLES)
def test_resetting_the_agents_needs_the_delete_permission(users, role):
    row = AgentState.objects.create(agent="forex", key="EUR/USD:BUY", wins=7, losses=3)
    client = page_client(users[role])
    client.post("/admin/decisions/agentstate/", {"action": "reset_agents", "_selected_action": [row.pk], "confirmed": "yes"})
    assert AgentState.objects.exists() is (role != "superuser"), role


@pytest.mark.parametrize("role", ROLES)
def test_resetting_the_portfolio_needs_the_change_and_add_permissions(users, role):
    before = current_portfolio().pk
    client = page_client(users[role])
    page = client.get("/admin/execution/portfolio/")
    response = client.post("/admin/execution/portfolio/reset/")
    if role == "superuser":
        assert b"Reset portfolio" in page.content and response.status_code == 302
        assert current_portfolio().pk != before
    else:
        assert response.status_code in (302, 403) and current_portfolio().pk == before
        assert response.status_code == 403 or response["Location"].startswith("/admin/login/")
        assert b"Reset portfolio" not in page.content
    assert Portfolio.objects.count() == (2 if role == "superuser" else 1)


@pytest.mark.parametrize("model", SINGLETON_ADMINS, ids=lambda m: m.__name__)
@pytest.mark.parametrize("role", ROLES)
def test_a_settings_row_is_added_only_with_the_add_permission(users, role, model):
    """Finding 5: the add page of a missing settings row was open to staff with no permission."""
    model.objects.all().delete()
    client = page_client(users[role])
    response = client.post(admin_url(model, "add"), {})
    changelist = client.get(admin_url(model, "changelist"))
    if role == "not_staff":
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
        assert changelist.status_code == 302 and changelist["Location"].startswith("/admin/login/")
    elif role == "superuser":
        assert response.status_code in (200, 302)  # the form again (a required field) or the saved row
        assert changelist.status_code == 302
    else:
        assert response.status_code == 403, role
        assert changelist.status_code == (302 if role == "staff_view_only" else 403), role
    if role in ("not_staff", "staff_no_perms"):
        assert not model.objects.exists()  # reading the list (get_solo) did not create it either


@pytest.mark.parametrize("role", ROLES)
def test_changing_a_settings_row_in_admin_needs_the_change_permission(users, role):
    client = page_client(users[role])
    limits = RiskLimits.get_solo()
    response = client.post(admin_url(RiskLimits, "change", limits.pk), {"max_trades_per_day": "100000"})
    assert RiskLimits.get_solo().max_trades_per_day != 100000
    if role in ("staff_view_only", "staff_no_perms"):
        assert response.status_code == 403
    elif role == "not_staff":
        assert response.status_code == 302 and response["Location"].startswith("/admin/login/")
    else:
        assert response.status_code == 200 and response.context["adminform"].form.errors  # the form, incomplete


@pytest.mark.parametrize("role", ROLES)
def test_switching_off_a_periodic_task_needs_the_change_permission(users, role):
    """Celery beat's own admin actions checked nothing: a view-only user could stop the scans."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every = IntervalSchedule.objects.create(every=10, period=IntervalSchedule.SECONDS)
    task = PeriodicTask.objects.create(name="probe", task="trifecta_site.tasks.heartbeat", interval=every, enabled=True)
    page_client(users[role]).post("/admin/django_celery_beat/periodictask/",
                                  {"action": "disable_tasks", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.enabled is (role != "superuser"), role
