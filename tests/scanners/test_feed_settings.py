"""Venues and symbols to poll are edited in admin, validated, and applied at the next poll."""
import pytest
from django.contrib.auth import get_user_model
from django.forms.models import model_to_dict

from scanners.feeds import current_feed, reset_current_feed
from scanners.models import FeedSettings
from trifecta_site.models import ConfigChange

pytestmark = pytest.mark.django_db
URL = "/admin/scanners/feedsettings/1/change/"


@pytest.fixture
def operator(client):
    client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    return client


def form(**change):
    return {**{k: v for k, v in model_to_dict(FeedSettings.get_solo()).items() if k != "id"}, **change}


def test_first_values_come_from_the_environment(settings):
    settings.TRIFECTA_VENUES, settings.TRIFECTA_SYMBOLS = ["kraken"], ["ETH/USD"]
    row = FeedSettings.get_solo()
    assert row.venue_list() == ["kraken"] and row.symbol_list() == ["ETH/USD"]


@pytest.mark.parametrize("change, field, message", [
    ({"venues": "binance,notavenue"}, "venues", "unknown venue notavenue"),
    ({"venues": " , "}, "venues", "at least one venue"),
    ({"symbols": "btcusdt"}, "symbols", "not a unified symbol: btcusdt"),
    ({"mt5_symbols": "EUR USD"}, "mt5_symbols", "not a MetaTrader symbol name"),
])
def test_unknown_venues_and_malformed_symbols_are_refused(operator, change, field, message):
    before = model_to_dict(FeedSettings.get_solo())
    response = operator.post(URL, form(**change))
    assert response.status_code == 200
    assert message in " ".join(response.context["adminform"].form.errors[field])
    assert model_to_dict(FeedSettings.get_solo()) == before and not ConfigChange.objects.exists()


def test_a_change_rebuilds_the_live_feed_at_its_next_use(operator, settings):
    settings.TRIFECTA_FEED = "ccxt"
    reset_current_feed()
    try:
        FeedSettings.objects.update_or_create(pk=1, defaults={"venues": "binance", "symbols": "BTC/USDT"})
        first = current_feed()
        assert first.venue_names == ["binance"] and current_feed() is first
        assert operator.post(URL, form(venues="binance,kraken", symbols="BTC/USDT,ETH/USDT")).status_code == 302
        assert ConfigChange.objects.filter(field="venues", new_value="binance,kraken").exists()
        second = current_feed()
        assert second is not first and second.venue_names == ["binance", "kraken"] and second.wanted == ["BTC/USDT", "ETH/USDT"]
    finally:
        reset_current_feed()


def test_stream_venues_come_from_the_environment_and_must_be_among_the_venues(operator, settings):
    settings.TRIFECTA_STREAM_VENUES = ["*"]
    assert FeedSettings.get_solo().stream_venue_list() == ["*"]
    response = operator.post(URL, form(venues="binance", stream_venues="kraken"))
    assert response.status_code == 200
    assert "not among the venues: kraken" in " ".join(response.context["adminform"].form.errors["stream_venues"])


def test_a_stream_venues_change_rebuilds_the_feed_with_its_streams(operator, settings):
    settings.TRIFECTA_FEED, settings.CCXT_STREAM_BACKOFF_MAX_S = "ccxt", 12.0
    reset_current_feed()
    try:
        FeedSettings.objects.update_or_create(pk=1, defaults={"venues": "binance,kraken", "symbols": "BTC/USDT",
                                                              "stream_venues": "*"})
        first = current_feed()
        assert first.stream_venues == {"binance", "kraken"} and first.backoff.cap_s == 12.0
        assert operator.post(URL, form(stream_venues="kraken")).status_code == 302
        second = current_feed()
        assert second is not first and second.stream_venues == {"kraken"}
        assert operator.post(URL, form(stream_venues="")).status_code == 302
        assert current_feed().stream_venues == set()  # REST polling only
    finally:
        reset_current_feed()
