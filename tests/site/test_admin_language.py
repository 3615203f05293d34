"""Admin speaks the desk's language: titled Trifecta, every model named and shown by what
it is, every setting with help text that gives its unit, and a favicon."""
import pytest
from django.apps import apps
from django.contrib.auth import get_user_model

from trifecta_site.models import SingletonSettings

pytestmark = pytest.mark.django_db
DESK_APPS = ("trifecta_site", "scanners", "decisions", "execution")


@pytest.fixture
def admin_client(client):
    user = get_user_model().objects.create_superuser("boss", password="pw-for-tests-1")
    client.force_login(user)
    return client


def desk_models():
    return [m for m in apps.get_models() if m._meta.app_label in DESK_APPS]


def test_admin_is_titled_trifecta_with_a_favicon(admin_client):
    page = admin_client.get("/admin/").content.decode()
    assert "<title>Site administration | Trifecta</title>" in page
    assert '<a href="/admin/">Trifecta</a>' in page
    assert "Django administration" not in page and "Django site admin" not in page
    assert "trifecta/favicon.svg" in page
    favicon = admin_client.get("/favicon.ico")
    assert favicon.status_code == 302 and favicon["Location"].endswith("trifecta/favicon.ico")


def test_every_model_has_a_readable_name_and_every_settings_row_says_what_it_is():
    for model in desk_models():
        name = str(model._meta.verbose_name)
        assert name == name.lower() and not any(c.isupper() for c in name), (model, name)  # "risk limits", not "RiskLimits"
        assert " " in name or name.isalpha(), (model, name)
        assert model.__str__ is not __import__("django").db.models.Model.__str__, f"{model.__name__} has no __str__"
    for model in desk_models():
        if issubclass(model, SingletonSettings):
            assert str(model()) == str(model._meta.verbose_name).capitalize()  # "Risk limits"


UNITS = ("percent", "%", "USD", "ms", "seconds", "minutes", "count", "0-1", "0-100", "ratio", "basis points", "ATR",
         "pips", "spreads", "times", "comma-separated", "on =", "off =", "time zone", "bar length", "presets", "fraction")


def test_every_setting_has_help_text_with_its_unit():
    missing = []
    for model in desk_models():
        if not issubclass(model, SingletonSettings) or not model.audited:
            continue
        for field in model._meta.concrete_fields:
            if field.name == "id":
                continue
            text = str(field.help_text)
            if not text or not any(unit in text for unit in UNITS):
                missing.append(f"{model.__name__}.{field.name}: {text!r}")
    assert missing == []
