"""Resetting an agent in admin asks first, then forgets only that agent's learning."""
import pytest
from django.contrib.auth import get_user_model

from decisions.models import AgentState

pytestmark = pytest.mark.django_db


def test_reset_asks_for_confirmation_then_forgets_that_agent(client):
    client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    forex = AgentState.objects.create(agent="forex", key="EUR/USD:BUY", wins=7, losses=3)
    AgentState.objects.create(agent="forex", key="EUR/USD:*", wins=7, losses=3)
    AgentState.objects.create(agent="binary", key="BTC/USDT:CALL:60", wins=2)
    selection = {"action": "reset_agents", "_selected_action": [forex.pk]}
    page = client.post("/admin/decisions/agentstate/", selection)
    assert page.status_code == 200 and b"Yes, reset forex" in page.content
    assert AgentState.objects.count() == 3  # nothing gone yet
    done = client.post("/admin/decisions/agentstate/", {**selection, "confirmed": "yes"})
    assert done.status_code == 302
    assert list(AgentState.objects.values_list("agent", flat=True)) == ["binary"]
