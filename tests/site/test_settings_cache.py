"""Configuration rows are kept per process and reloaded when any process changes them."""
from decimal import Decimal as D

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from decisions.models import RiskLimits, RiskState
from trifecta_site import models as site_models

pytestmark = pytest.mark.django_db(transaction=True)


def queries(read):
    with CaptureQueriesContext(connection) as captured:
        value = read()
    return value, len(captured)


def test_a_configuration_row_is_read_from_the_database_once_then_kept():
    RiskLimits.get_solo()  # creates the row: that save renews the token
    RiskLimits.get_solo()
    limits, count = queries(RiskLimits.get_solo)
    assert count == 0 and limits.max_trades_per_day == 50
    limits.max_trades_per_day = 7  # a copy: changing it changes nothing kept
    assert RiskLimits.get_solo().max_trades_per_day == 50


def test_a_save_anywhere_reaches_every_process_at_its_next_read():
    RiskLimits.get_solo(), RiskLimits.get_solo()
    RiskLimits.objects.filter(pk=1).update(max_daily_loss=D("42"))  # another process commits a change...
    assert RiskLimits.get_solo().max_daily_loss == D("100")
    cache.set(site_models.SETTINGS_VERSION_KEY, "renewed by the other process")  # ...and renews the token
    assert RiskLimits.get_solo().max_daily_loss == D("42")


def test_saving_renews_the_token_after_commit():
    before = cache.get(site_models.SETTINGS_VERSION_KEY)
    limits = RiskLimits.get_solo()
    limits.max_trades_per_day = 9
    limits.save()
    assert cache.get(site_models.SETTINGS_VERSION_KEY) != before
    assert RiskLimits.get_solo().max_trades_per_day == 9


def test_a_copy_is_never_older_than_the_maximum_age(monkeypatch):
    RiskLimits.get_solo(), RiskLimits.get_solo()
    RiskLimits.objects.filter(pk=1).update(max_trades_per_day=3)
    monkeypatch.setattr(site_models, "SETTINGS_MAX_AGE_S", 0)
    assert RiskLimits.get_solo().max_trades_per_day == 3


def test_runtime_state_is_always_read_from_the_database():
    RiskState.get_solo()
    _, count = queries(RiskState.get_solo)
    assert count == 1
