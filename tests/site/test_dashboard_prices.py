"""The dashboard's price chart on a recording with a gap: it opens on the instrument that is
trading now, and says when the one chosen has had no price for a while (real recordings have
hours-long gaps; a flat, silent chart would look like a market that stopped)."""
import json
import time

import pytest
from django.contrib.auth import get_user_model

from scanners.feeds import reset_current_feed

pytestmark = pytest.mark.django_db
START = 1_700_000_000_000
MINUTE = 60_000


def recording(root, *, quiet_after_min: int):
    """EUR/USD at two brokers, one minute apart; `quiet` stops quoting after `quiet_after_min`."""
    root.mkdir()
    manifest = {"format": "trifecta-recording/1", "name": "gap", "description": "a gap at one broker", "source": "tests",
                "start": START, "end": START + 60 * MINUTE,
                "venues": {"busy": {"asset_class": "forex", "taker_fee": "0"}, "quiet": {"asset_class": "forex", "taker_fee": "0"}}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for venue, minutes in (("busy", 61), ("quiet", quiet_after_min + 1)):
        (root / "quotes" / venue).mkdir(parents=True)
        rows = [f"{START + m * MINUTE},1.1000{m % 10},1.1001{m % 10},," for m in range(minutes)]
        (root / "quotes" / venue / "EUR-USD.csv").write_text("ts,bid,ask,bid_size,ask_size\n" + "\n".join(rows) + "\n")


@pytest.fixture
def gap_desk(tmp_path, settings, monkeypatch, client):
    recording(tmp_path / "gap", quiet_after_min=10)
    settings.TRIFECTA_FEED = "replay"
    settings.TRIFECTA_RECORDING = str(tmp_path / "gap")
    settings.TRIFECTA_REPLAY_SPEED = 1
    # the replay's clock 40 minutes into the recording, now
    monkeypatch.setenv("TRIFECTA_REPLAY_ANCHOR_MS", str(time.time_ns() // 1_000_000 - 40 * MINUTE))
    reset_current_feed()
    client.force_login(get_user_model().objects.create_user("viewer", password="pw-for-tests-1"))
    yield client
    reset_current_feed()


def test_the_state_gives_each_instruments_last_price_time(gap_desk):
    instruments = {i["venue"]: i["last_ms"] for i in gap_desk.get("/dashboard/state/").json()["instruments"]}
    assert instruments["quiet"] == START + 10 * MINUTE
    assert START + 40 * MINUTE <= instruments["busy"] <= START + 41 * MINUTE


def test_a_chart_that_ends_long_before_the_market_time_says_there_is_a_gap(gap_desk):
    quiet = gap_desk.get("/dashboard/prices/", {"venue": "quiet", "symbol": "EUR/USD"}).json()
    assert quiet["series"][-1]["time"] * 1000 == START + 10 * MINUTE
    assert quiet["gap"].startswith("no price since ") and "30 min of market time" in quiet["gap"]
    busy = gap_desk.get("/dashboard/prices/", {"venue": "busy", "symbol": "EUR/USD"}).json()
    assert busy["gap"] == "" and len(busy["series"]) >= 40
