"""Operators tune the desk in admin: bad values are refused with a message and change nothing."""
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.forms.models import model_to_dict

from decisions.models import Controls, RiskLimits
from execution.models import ExecutionSettings
from scanners.models import BinaryPayout, BinarySettings
from trifecta_site.models import ConfigChange

pytestmark = pytest.mark.django_db


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    return client


def form_of(model):
    return {k: v for k, v in model_to_dict(model.get_solo()).items() if v is not None and k != "id"}


@pytest.mark.parametrize("model, url, change, field", [
    (RiskLimits, "/admin/decisions/risklimits/1/change/", {"max_daily_loss": "-1"}, "max_daily_loss"),
    (RiskLimits, "/admin/decisions/risklimits/1/change/", {"day_timezone": "Nowhere/Land"}, "day_timezone"),
    (BinarySettings, "/admin/scanners/binarysettings/1/change/", {"auto_min_probability": "1.2"}, "auto_min_probability"),
    (ExecutionSettings, "/admin/execution/executionsettings/1/change/", {"realism": "reckless"}, "realism"),
    (ExecutionSettings, "/admin/execution/executionsettings/1/change/", {"max_quote_age_ms": "0"}, "max_quote_age_ms"),
])
def test_bad_settings_are_refused_with_a_message(operator, model, url, change, field):
    before = model_to_dict(model.get_solo())
    response = operator.post(url, {**form_of(model), **change})
    assert response.status_code == 200  # the form again, not a redirect
    assert field in response.context["adminform"].form.errors
    assert model_to_dict(model.get_solo()) == before
    assert not ConfigChange.objects.exists()


def test_a_payout_over_one_is_refused(operator):
    response = operator.post("/admin/scanners/binarypayout/add/", {"symbol": "BTC/USDT", "payout": "1.5"})
    assert response.status_code == 200 and "payout" in response.context["adminform"].form.errors
    assert not BinaryPayout.objects.exists()


def test_settings_rows_are_singletons_and_changes_are_audited(operator):
    assert operator.get("/admin/decisions/controls/").status_code == 302  # the list goes to the one row
    response = operator.post("/admin/decisions/controls/1/change/", {**form_of(Controls), "kill_switch": "on"})
    assert response.status_code == 302 and Controls.get_solo().kill_switch
    assert ConfigChange.objects.get(field="kill_switch").changed_by.username == "operator"
    assert operator.get("/admin/decisions/controls/add/").status_code == 403
    assert ConfigChange.objects.filter(setting="controls").count() == 1
    assert D(str(RiskLimits.get_solo().max_daily_loss)) == D("100")
