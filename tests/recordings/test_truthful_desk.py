"""The desk's numbers on real recordings, replayed with default settings (issue 27's checks).

Every recording directory under TRIFECTA_RECORDINGS (default ../shared/recordings) is replayed
once by the replay command, as a user runs it, and its report is held to what a trader must
be able to trust: prices no older than the maximum age, losses within the risk budget, forex
stops clear of the spread, probabilities no worse than the base rate, an expected P&L on
every trade. Each report is also held to the one the code gave before a change (`golden.json`:
a digest per report section), so a change meant to make the desk faster shows whatever it
changed. Long: marker `recordings`, run by `make test-recordings` (and CI), not `make test`.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import platform
import warnings
import subprocess
import sys
from collections import defaultdict
from decimal import Decimal as D
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
RECORDINGS = Path(os.environ.get("TRIFECTA_RECORDINGS", ROOT.parent / "shared" / "recordings"))
FOREX_BARS = ("fx-gbpusd-1m-2012-02", "fx-eurusd-1h-2014-2015")  # the desk must trade on minute and hourly forex
TIMEOUT_S = int(os.environ.get("TRIFECTA_RECORDING_TIMEOUT_S", "3600"))  # a replay on a slow, busy machine
GOLDEN = Path(__file__).resolve().parent / "golden.json"
WRITE_GOLDEN = os.environ.get("TRIFECTA_WRITE_GOLDEN") == "1"  # a change whose differences were each explained

pytestmark = [pytest.mark.shared, pytest.mark.recordings]


def data_size(recording: Path) -> int:
    return sum(f.stat().st_size for f in recording.rglob("*") if f.is_file())


def recordings() -> list:
    """The recordings, largest first: xdist hands tests out in this order, so the longest replays
    start at once instead of last (the run ends when its slowest replay does)."""
    found = [p for p in RECORDINGS.iterdir() if (p / "manifest.json").is_file()] if RECORDINGS.is_dir() else []
    found.sort(key=lambda p: (-data_size(p), p.name))
    return found or [pytest.param(None, id="none", marks=pytest.mark.skip(
        reason=f"no recordings at {RECORDINGS} (set TRIFECTA_RECORDINGS or check out ../shared)"))]


def replayed(recording: Path, out: Path) -> dict:
    """The recording's report, replayed by the command as a user runs it."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    done = subprocess.run([sys.executable, "manage.py", "replay", "--recording", str(recording), "--report", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads((out / "report.json").read_text())


@pytest.mark.parametrize("recording", recordings(), ids=lambda p: p.name)
def test_a_replay_with_default_settings_gives_numbers_a_trader_can_act_on(recording, tmp_path):
    report = replayed(recording, tmp_path)
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
    same_as_before(recording.name, report)


def day_of(ms: int) -> str:
    from datetime import datetime, timezone

    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).date().isoformat()


def section_digests(report: dict) -> dict:
    """A digest of each top-level section of a report, from its canonical JSON."""
    return {name: hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
            for name, value in sorted(report.items())}


def platform_of() -> dict:
    """What float results can depend on: the interpreter, numpy and the C library, and whether
    the processor has the AVX-512 paths numpy's vectorised math takes (ulps may differ)."""
    try:
        flags = next((line.split(":", 1)[1].split() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("flags")), [])
    except OSError:
        flags = []
    return {"python": ".".join(platform.python_version_tuple()[:2]), "numpy": np.__version__,
            "libc": "-".join(platform.libc_ver()), "machine": platform.machine(), "avx512f": "avx512f" in flags}


def same_as_before(name: str, report: dict) -> None:
    """The same recording and settings give the same report, section by section, as the code the
    digests were taken from (in the test that replayed it: one replay per recording), on the
    platform they were taken on (elsewhere a float may round otherwise: a warning, not a failure).
    `TRIFECTA_WRITE_GOLDEN=1 make test-recordings` takes them again, once every difference is
    explained in the commit that changes them."""
    digests = section_digests(report)
    if WRITE_GOLDEN:
        with open(GOLDEN.with_suffix(".lock"), "w") as lock:  # xdist workers write in turn, each rereading the file
            fcntl.flock(lock, fcntl.LOCK_EX)
            golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
            golden["platform"] = platform_of()
            golden.setdefault("reports", {})[name] = digests
            GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.is_file() else {}
    if name not in golden.get("reports", {}):
        return  # a recording the digests were not taken on (a held-out one): the checks above are its test
    if golden["platform"] != platform_of():  # another platform may round a float differently: not a change of ours
        warnings.warn(f"{name}: report digests not compared: taken on {golden['platform']}, this is {platform_of()}")
        return
    golden = golden["reports"]
    changed = sorted(key for key in set(digests) | set(golden[name]) if digests.get(key) != golden[name].get(key))
    assert not changed, f"{name}: report sections changed since the digests were taken: {changed}"
