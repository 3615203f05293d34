import pytest
from django.contrib.auth import get_user_model

from trifecta_site.management.commands.run import Command

pytestmark = pytest.mark.django_db


def test_first_run_creates_an_admin_and_shows_its_password_once(monkeypatch):
    monkeypatch.delenv("DJANGO_SUPERUSER_PASSWORD", raising=False)
    first = Command().ensure_superuser()
    password = first.rsplit("password: ", 1)[1].split()[0]
    user = get_user_model().objects.get(username="admin")
    assert user.is_superuser and user.check_password(password)
    second = Command().ensure_superuser()
    assert password not in second and "changepassword admin" in second


def test_password_can_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("DJANGO_SUPERUSER_PASSWORD", "correct-horse-battery-staple")
    monkeypatch.setenv("DJANGO_SUPERUSER_USERNAME", "ops")
    message = Command().ensure_superuser()
    assert "correct-horse" not in message
    assert get_user_model().objects.get(username="ops").check_password("correct-horse-battery-staple")
