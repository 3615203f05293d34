"""Configuration rows are kept per process and reloaded when any process changes them."""
from decimal import Decimal as D

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from decisions.models import RiskLimits, RiskState
from scanners.models import BinarySettings
from trifecta_site import models as site_models
from trifecta_site.models import ConfigurationVersion

pytestmark = pytest.mark.django_db(transaction=True)


def queries(read):
    with CaptureQueriesContext(connection) as captured:
        value = read()
    return value, len(captured)


def test_a_configuration_row_is_read_from_the_database_once_then_kept():
    RiskLimits.get_solo()  # creates the row: that save raises the version
    RiskLimits.get_solo()
    with CaptureQueriesContext(connection) as captured:
        limits = RiskLimits.get_solo()
    assert len(captured) == 1 and site_models.ConfigurationVersion._meta.db_table in captured[0]["sql"]  # the version only
    assert limits.max_trades_per_day == 50
    limits.max_trades_per_day = 7  # a copy: changing it changes nothing kept
    assert RiskLimits.get_solo().max_trades_per_day == 50


def test_a_save_anywhere_reaches_every_process_at_its_next_read():
    RiskLimits.get_solo(), RiskLimits.get_solo()
    RiskLimits.objects.filter(pk=1).update(max_daily_loss=D("42"))  # another process writes the row...
    assert RiskLimits.get_solo().max_daily_loss == D("100")
    ConfigurationVersion.objects.filter(pk=1).update(version=F("version") + 1)  # ...and replaces the version
    assert RiskLimits.get_solo().max_daily_loss == D("42")


def test_saving_replaces_the_version_in_its_own_transaction():
    limits = RiskLimits.get_solo()
    before = site_models.configuration_version()
    with transaction.atomic():
        limits.max_trades_per_day = 9
        limits.save()
        assert site_models.configuration_version() != before
        assert RiskLimits.get_solo().max_trades_per_day == 9  # read (and kept) inside the transaction
    assert RiskLimits.get_solo().max_trades_per_day == 9


def test_a_change_rolled_back_reaches_no_process():
    RiskLimits.get_solo()
    before = site_models.configuration_version()
    with pytest.raises(RuntimeError), transaction.atomic():
        limits = RiskLimits.get_solo()
        limits.max_trades_per_day = 9
        limits.save()
        assert RiskLimits.get_solo().max_trades_per_day == 9
        raise RuntimeError("the admin's transaction fails")
    assert site_models.configuration_version() == before
    assert RiskLimits.get_solo().max_trades_per_day == 50  # the copy read inside the failed transaction is never used


def test_one_reading_checks_every_row_against_one_version():
    RiskLimits.get_solo(), RiskLimits.get_solo()  # the first creates the row, the second keeps it
    with site_models.one_configuration_reading():
        _, count = queries(lambda: (RiskLimits.get_solo(), RiskLimits.get_solo()))
    assert count == 0


def test_a_change_inside_a_nested_reading_moves_the_readings_around_it_too():
    """A replay pins one reading for its run and each decision one inside it: a row created or
    saved inside the inner one must not leave the outer one at the old version, where every
    row would be reloaded each time the two readings take turns."""
    RiskLimits.get_solo()
    with site_models.one_configuration_reading():
        with site_models.one_configuration_reading(version=site_models.configuration_version()):
            limits = RiskLimits.get_solo()
            limits.max_trades_per_day = 9
            limits.save()
            inner = site_models.configuration_version()
        assert site_models.configuration_version() == inner == ConfigurationVersion.objects.get(pk=1).version
        RiskLimits.get_solo()
        _, count = queries(lambda: (RiskLimits.get_solo(), RiskLimits.get_solo()))
    assert count == 0
    assert RiskLimits.get_solo().max_trades_per_day == 9


def test_a_row_s_first_use_gives_its_values_as_every_later_read_does():
    """A row created on first use is read back: its default payout 0.85 is 0.8500 at once, so a
    binary's figures (and the signature that tells a new opportunity from a repeat) do not change
    between the first scan and the next."""
    first = BinarySettings.get_solo()
    site_models.forget_settings()
    again = BinarySettings.get_solo()
    assert str(first.default_payout) == str(again.default_payout) == "0.8500"


def test_runtime_state_is_always_read_from_the_database():
    RiskState.get_solo()
    _, count = queries(RiskState.get_solo)
    assert count == 1
