"""The portfolio reset in admin: confirmation first, history kept, a fresh account after."""
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model

from decisions.models import RiskState
from execution.models import Portfolio
from execution.portfolio import cash_account, current_portfolio, desk_stats

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    user = get_user_model().objects.create_superuser("operator", password="pw-for-tests-1")
    client.force_login(user)
    return user


def test_reset_asks_first_then_opens_a_fresh_portfolio_keeping_the_old_one(client, operator):
    old = current_portfolio()
    cash = cash_account(old)
    cash.total, cash.free = D("90000"), D("90000")
    cash.save()
    RiskState.objects.update_or_create(pk=1, defaults={"peak_equity": D("100000"), "loss_streak": 3})
    page = client.get("/admin/execution/portfolio/reset/")
    assert page.status_code == 200 and b"Yes, reset the portfolio" in page.content
    assert Portfolio.objects.count() == 1  # nothing happens on GET
    response = client.post("/admin/execution/portfolio/reset/")
    assert response.status_code == 302
    fresh = current_portfolio()
    assert fresh.pk != old.pk and fresh.reset_by == operator
    assert cash_account(fresh).total == D("100000")
    old.refresh_from_db()
    assert old.ended_at is not None and cash_account(old).total == D("90000")  # history kept
    state = RiskState.objects.get()
    assert state.peak_equity is None and state.loss_streak == 0
    assert desk_stats()["portfolio_value"] == "100000.00"


def test_staff_who_are_not_superusers_cannot_reset(client):
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests-1", is_staff=True)
    client.force_login(user)
    old = current_portfolio()
    client.post("/admin/execution/portfolio/reset/")
    assert current_portfolio().pk == old.pk
