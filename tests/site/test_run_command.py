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


# --- which market data a run uses ------------------------------------------------------

import json  # noqa: E402
import socket  # noqa: E402
import time  # noqa: E402

from tests.conftest import FIXTURES  # noqa: E402
from tests.venue_server import VenueServer  # noqa: E402
from trifecta_site.demo import DEMO_RECORDING, demo_manifest  # noqa: E402
from trifecta_site.management.commands.run import DEMO_STARTUP_S  # noqa: E402


@pytest.fixture
def nothing_set(monkeypatch):
    for name in ("TRIFECTA_FEED", "TRIFECTA_RECORDING", "TRIFECTA_REPLAY_SPEED", "TRIFECTA_REPLAY_ANCHOR_MS"):
        monkeypatch.delenv(name, raising=False)
    return {"PATH": __import__("os").environ["PATH"]}


def dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again: nothing listens there


def test_with_nothing_set_a_venue_that_answers_makes_the_run_live(nothing_set, settings):
    with VenueServer(FIXTURES / "recordings" / "two-venues", clock=1700000000000 + 20_000, timeout_s=5) as server:
        settings.CCXT_URLS = server.urls()
        env = dict(nothing_set)
        source = Command().choose_data(env)
    assert source["kind"] == "live" and env["TRIFECTA_FEED"] == "ccxt"
    assert "binance, kraken answered" in env["TRIFECTA_DATA_NOTE"]
    assert "TRIFECTA_RECORDING" not in env


def test_with_nothing_set_and_every_venue_unreachable_the_run_falls_back_to_the_demo(nothing_set, settings):
    port = dead_port()
    settings.CCXT_URLS = {"binance": f"http://127.0.0.1:{port}/binance", "kraken": f"http://127.0.0.1:{port}/kraken"}
    env = dict(nothing_set)
    began = time.monotonic()
    source = Command().choose_data(env)
    assert time.monotonic() - began < 20, "the probe takes a few seconds, not a timeout's worth"
    assert source["kind"] == "demo"
    assert env["TRIFECTA_FEED"] == "replay" and env["TRIFECTA_RECORDING"] == str(DEMO_RECORDING)
    assert "no live venue answered" in env["TRIFECTA_DATA_NOTE"] and "binance" in env["TRIFECTA_DATA_NOTE"]
    pace = demo_manifest()["demo"]
    assert float(env["TRIFECTA_REPLAY_SPEED"]) == pace["speed"]
    # The clock is anchored so that it reaches the manifest's `begin` as the worker starts
    # scanning (DEMO_STARTUP_S from now), history behind it.
    anchor = int(env["TRIFECTA_REPLAY_ANCHOR_MS"])
    ahead = (time.time_ns() // 1_000_000 + DEMO_STARTUP_S * 1000 - anchor) * pace["speed"]
    assert abs(demo_manifest()["start"] + ahead - pace["begin"]) < 60_000


def test_a_set_feed_or_recording_is_used_as_it_is(nothing_set, monkeypatch):
    monkeypatch.setenv("TRIFECTA_FEED", "replay")
    monkeypatch.setenv("TRIFECTA_RECORDING", str(FIXTURES / "recordings" / "desk-smoke"))
    env = dict(nothing_set, TRIFECTA_FEED="replay", TRIFECTA_RECORDING=str(FIXTURES / "recordings" / "desk-smoke"))
    source = Command().choose_data(env)
    assert source["kind"] == "replay" and env["TRIFECTA_RECORDING"].endswith("desk-smoke")
    assert "TRIFECTA_DATA_NOTE" not in env


def test_the_demo_is_real_data_under_3_mb_with_its_source_and_licence_named():
    size = sum(f.stat().st_size for f in DEMO_RECORDING.rglob("*") if f.is_file())
    assert size <= 3 * 1024 * 1024, size
    manifest = demo_manifest()
    assert manifest["format"] == "trifecta-recording/1"
    assert manifest["source_recordings"] == ["fx-brokers-2014-05", "fx-ticks-2014-05-02"]
    assert "QuantConnect/Lean" in manifest["source"] and "Apache-2.0" in manifest["licence"]
    assert manifest["start"] <= manifest["demo"]["begin"] < manifest["end"]
    json.dumps(manifest)
