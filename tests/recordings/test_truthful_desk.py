"""The desk's numbers on real recordings, replayed with default settings (issue 27's checks).

Every recording directory under TRIFECTA_RECORDINGS (default ../shared/recordings) is replayed
once by the replay command, as a user runs it, and its report is held to what a trader must
be able to trust: prices no older than the maximum age, losses within the risk budget, forex
stops clear of the spread, probabilities no worse than the base rate, an expected P&L on
every trade. Long: marker `recordings`, run by `make test-recordings` (and CI), not `make test`.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = Path(os.environ.get("TRIFECTA_RECORDINGS", ROOT.parent / "shared" / "recordings"))
FOREX_BARS = ("fx-gbpusd-1m-2012-02", "fx-eurusd-1h-2014-2015")  # the desk must trade on minute and hourly forex
TIMEOUT_S = int(os.environ.get("TRIFECTA_RECORDING_TIMEOUT_S", "1500"))

pytestmark = [pytest.mark.shared, pytest.mark.recordings]


def recordings() -> list[Path]:
    if not RECORDINGS.is_dir():
        return []
    return sorted(p for p in RECORDINGS.iterdir() if (p / "manifest.json").is_file())


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    """Each recording's report, replayed once per run (skipped with a reason where there are none)."""
    if not recordings():
        pytest.skip(f"no recordings at {RECORDINGS} (set TRIFECTA_RECORDINGS or check out ../shared)")
    return {}


def report_of(reports: dict, recording: Path, tmp_path_factory) -> dict:
    if recording.name not in reports:
        out = tmp_path_factory.mktemp(recording.name)
        env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
        done = subprocess.run([sys.executable, "manage.py", "replay", "--recording", str(recording), "--report", str(out)],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
        assert done.returncode == 0, done.stderr[-3000:]
        reports[recording.name] = json.loads((out / "report.json").read_text())
    return reports[recording.name]


@pytest.mark.parametrize("recording", recordings(), ids=lambda p: p.name)
def test_a_replay_with_default_settings_gives_numbers_a_trader_can_act_on(recording, reports, tmp_path_factory):
    report = report_of(reports, recording, tmp_path_factory)
    settings = report["settings"]
    max_age = int(settings["execution"]["max_quote_age_ms"])
    limit = D(str(settings["limits"]["max_daily_loss"]))
    trades = [t for t in report["trades"] if t["status"] != "rejected"]

    for trade in trades:  # no fill on a price older than the max age, nor of negative age
        assert all(0 <= age <= max_age for age in trade["price_ages_ms"]), (trade["id"], trade["price_ages_ms"])
        assert trade["expected_pnl"] is not None, trade["id"]  # an expected P&L on every trade
        assert trade["max_loss"] is not None, trade["id"]

    net_by_day = defaultdict(D)
    for trade in trades:
        if trade["realized_pnl"] is not None:
            net_by_day[day_of(trade["opened_at"])] += D(trade["realized_pnl"])
            assert -D(trade["realized_pnl"]) <= limit, trade  # no single trade loses more than the day's limit
    worst = min(net_by_day.values(), default=D(0))
    assert worst >= -limit * D("1.5"), dict(net_by_day)

    forex = [t for t in trades if t["kind"] == "forex" and t.get("stop_loss") is not None]
    for trade in forex:  # stops at least 3 entry spreads away
        spread = D(str(trade["edge"].get("entry_spread", "0")))
        assert spread > 0, trade["id"]
        assert abs(D(trade["entry_price"]) - D(trade["stop_loss"])) >= 3 * spread, trade
    quick_stops = [t for t in forex if t["close_reason"] == "stop_loss" and t["closed_at"] - t["opened_at"] <= 60_000]
    assert len(quick_stops) <= 0.10 * len(forex), (len(quick_stops), len(forex))

    for kind, calibration in report["calibration"].items():  # probabilities no worse than the base rate's
        if calibration["count"] >= 30:
            assert D(calibration["brier"]) <= D(calibration["base_rate_brier"]) + D("0.02"), (kind, calibration)

    if recording.name in FOREX_BARS:
        assert forex, f"no forex trade on {recording.name} with default settings"


def day_of(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date().isoformat()
