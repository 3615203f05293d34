"""Controls start from AUTO_EXECUTE; every change of controls, limits and thresholds is audited."""
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from decisions.models import Controls, RiskLimits
from scanners.models import ArbitrageSettings
from trifecta_site.models import ConfigChange

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("auto, mode", [(False, "DISPLAY ONLY"), (True, "AUTO-EXECUTE")])
def test_controls_start_from_the_environment(settings, auto, mode):
    settings.AUTO_EXECUTE = auto
    controls = Controls.get_solo()
    assert controls.auto_execute is auto and controls.mode == mode
    controls.kill_switch = True
    assert controls.mode == "HALTED"


@pytest.fixture
def staff_client(client):
    user = get_user_model().objects.create_superuser("ops", password="pw-for-tests-1")
    client.force_login(user)
    return client, user


def test_a_change_in_admin_is_audited_with_who_old_and_new(staff_client):
    client, user = staff_client
    RiskLimits.get_solo()
    response = client.get("/admin/decisions/risklimits/")
    assert response.status_code == 302  # the singleton's list opens its one row
    form = {
        "max_trades_per_day": "40", "max_daily_loss": "100", "max_consecutive_losses": "5", "max_position_pct": "25",
        "cooldown_minutes": "30", "drawdown_halt_pct": "10", "binary_max_stake_pct": "2", "day_timezone": "UTC", "max_risk_per_trade_pct": "0.05",
            "min_trade_usd": "10",
    }
    response = client.post("/admin/decisions/risklimits/1/change/", form)
    assert response.status_code == 302, response.content[:2000]
    [change] = ConfigChange.objects.all()
    assert (change.setting, change.field, change.old_value, change.new_value, change.changed_by) == (
        "risk limits", "max_trades_per_day", "50", "40", user,
    )
    assert client.get("/admin/trifecta_site/configchange/?setting=risk+limits").status_code == 200


def test_a_negative_limit_is_refused_with_a_message_and_nothing_changes(staff_client):
    client, _ = staff_client
    RiskLimits.get_solo()
    form = {
        "max_trades_per_day": "50", "max_daily_loss": "-5", "max_consecutive_losses": "5", "max_position_pct": "25",
        "cooldown_minutes": "30", "drawdown_halt_pct": "10", "binary_max_stake_pct": "2", "day_timezone": "UTC", "max_risk_per_trade_pct": "0.05",
            "min_trade_usd": "10",
    }
    response = client.post("/admin/decisions/risklimits/1/change/", form)
    assert response.status_code == 200 and b"greater than or equal to 0" in response.content
    assert RiskLimits.get_solo().max_daily_loss == Decimal("100") and not ConfigChange.objects.exists()


def test_saving_thresholds_without_a_change_writes_no_audit_row():
    row = ArbitrageSettings.get_solo()
    row.save()
    row.min_net_pct = Decimal("0.8")
    row.save()
    assert list(ConfigChange.objects.values_list("field", "old_value", "new_value")) == [("min_net_pct", "0.5000", "0.8")]
