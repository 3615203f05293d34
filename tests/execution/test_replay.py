"""Replaying the desk over a recording: the report, its accounting, the limits, and the command.

In-process tests replay a made-up market (tests/execution/synthetic.py) in the test
database; command tests run `manage.py replay` as a user does (its own process, its own
in-memory database); the real recordings of ../shared are replayed where present.
"""
import csv
import io
import json
import os
import pty
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal as D
from pathlib import Path

import pytest
from django.conf import settings
from django.db import transaction

from execution.management.commands.replay import apply_settings
from execution.replay import Replay
from execution.report import build_report
from scanners import services
from scanners.feeds.replay import RecordingReader
from scanners.models import Opportunity

from ..conftest import shared_recording
from ..site.test_api import client_for
from ..waiting import wait_for
from .synthetic import START, write_market

# A replay runs on its own in-memory SQLite whatever DATABASE_URL says: the SQLite pass runs these.
pytestmark = pytest.mark.replay_database
MANAGE = Path(settings.BASE_DIR) / "manage.py"
PERMISSIVE = {
    "limits": {"max_trades_per_day": 10_000, "max_daily_loss": "1000000", "max_consecutive_losses": 1000,
               "drawdown_halt_pct": "100"},
    "thresholds": {"arbitrage": {"min_net_pct": "0", "auto_min_net_pct": "0", "auto_min_profit_usd": "0",
                                 "auto_max_risk": "100", "max_risk_score": "100"},
                   "forex": {"timeframe": "1m", "min_risk_reward": "1", "auto_min_confidence": "0.6", "auto_min_risk_reward": "1"},  # 105 minutes of bars: too few for 15m
                   "binary": {"min_probability": "0.5", "auto_min_probability": "0.5"}},
}


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    return write_market(tmp_path_factory.mktemp("market") / "synthetic", minutes=40)


@pytest.fixture(scope="module")
def permissive_report(market, django_db_setup, django_db_blocker):
    """One replay of the made-up market with permissive settings, shared by the tests that only read its report."""
    with django_db_blocker.unblock(), transaction.atomic():
        report = replay_report(market, PERMISSIVE)
        transaction.set_rollback(True)
    return report


def replay_report(path, overrides, **window) -> dict:
    apply_settings(overrides)
    services.forget_scan_state()
    result = Replay(RecordingReader(path), **window).run()
    return build_report(result=result, recording_name="synthetic-desk")


def recorded_mid(recording: Path, venue: str, symbol: str, at: int) -> D | None:
    """The mid of the last quote at or before `at`, read from the CSV file itself."""
    path = recording / "quotes" / venue / (symbol.replace("/", "-") + ".csv")
    mid = None
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["ts"]) > at:
                break
            mid = (D(row["bid"]) + D(row["ask"])) / 2
    return mid


def day_of(ms: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(ms / 1000))


def check_report(report: dict, recording: Path, limits: dict) -> None:
    """What every replay must show: accounting to the unit, limits held each day, binaries settled as recorded."""
    closed = [t for t in report["trades"] if t["status"] == "closed"]
    realized = sum((D(t["realized_pnl"]) for t in closed), D(0))
    held = report["inventory"]  # the venue balances: in the start at their seed value, at market in the end
    assert D(report["start_equity"]) == D(held["cash_start"]) + D(held["seed_value"])
    assert D(report["final_equity"]) == (D(report["start_equity"]) + realized + D(report["unrealized_pnl"])
                                         + D(held["revaluation"]))
    assert D(report["realized_pnl"]) == realized
    assert abs(D(report["cash"]) - (D(held["cash_start"]) + realized)) < D("0.000001")
    arbitrage = sum((D(t["realized_pnl"]) for t in closed if t["kind"] == "arbitrage"), D(0))
    assert abs(D(report["final_equity"]) - (D(report["cash"]) - arbitrage + D(held["market_value"])
                                            + D(report["unrealized_pnl"]))) < D("0.000001")
    assert abs(D(held["market_value"]) - sum((D(b["value"]) for b in held["balances"]), D(0))) < D("0.000001")
    if report["complete"]:
        assert all(t["status"] == "closed" for t in report["trades"])
    opened_per_day = Counter(day_of(t["opened_at"]) for t in report["trades"])
    for day in report["days"]:
        assert day["trades"] <= limits["max_trades_per_day"]
        assert opened_per_day[day["date"]] <= limits["max_trades_per_day"]
    decided = {d["opportunity"]: d["decided_at"] for d in report["decisions"] if d["layer"] == "governor"}
    outcomes = [(t["closed_at"], D(t["realized_pnl"])) for t in report["trades"]
                if t["closed_at"] is not None and t["realized_pnl"] is not None]
    for trade in report["trades"]:  # the day's net loss realized before the decision to open it stayed within the budget
        at = decided[trade["opportunity"]]
        net = sum((pnl for closed_at, pnl in outcomes if closed_at < at and day_of(closed_at) == day_of(at)), D(0))
        assert -net < D(limits["max_daily_loss"]), ("a trade approved after the day's loss budget was spent", trade)
    for trade in report["trades"]:
        if trade["kind"] != "binary":
            continue
        venue, symbol = trade["venues"][0], trade["symbol"]
        if not (recording / "quotes" / venue / (symbol.replace("/", "-") + ".csv")).is_file():
            continue  # a bar-only instrument settles on bar closes, checked by the monitor's tests
        settle = recorded_mid(recording, venue, symbol, trade["expiry_at"])
        if trade["outcome"] == "void":
            continue
        assert D(trade["settle_price"]) == settle.quantize(D("1e-10")), trade
        entry = D(trade["entry_price"])
        expected = "tie" if settle == entry else (
            "win" if (settle > entry) == (trade["direction"] == "CALL") else "loss")
        assert trade["outcome"] == expected, trade


def test_a_replay_trades_all_three_kinds_and_its_accounting_holds(permissive_report, market):
    report = permissive_report
    assert report["complete"] and report["format"] == "trifecta-replay-report/1"
    assert {"arbitrage", "forex", "binary"} <= set(report["per_kind"]), report["per_kind"]
    check_report(report, market, PERMISSIVE["limits"])
    binary = next(t for t in report["trades"] if t["kind"] == "binary")
    assert {"direction", "entry_price", "expiry_at", "settle_price", "stake", "payout", "outcome"} <= set(binary)
    arbitrage = next(t for t in report["trades"] if t["kind"] == "arbitrage")
    assert len(arbitrage["fills"]) == 2 and all(D(f["fee"]) > 0 for f in arbitrage["fills"])
    assert report["equity_curve"][0]["equity"] == report["equity_curve"][0]["starting_value"]  # before any trade
    last_start = D(report["equity_curve"][-1]["starting_value"])  # the inventory seeded since, in it (SQLite: 15 digits)
    assert abs(last_start - D(report["start_equity"])) < D("0.000001")
    assert sum(day["trades"] for day in report["days"]) == len(report["trades"])
    assert all(day["limit_trips"] == {} for day in report["days"])
    risk_days = sum(D(day["realized_pnl"]) for day in report["days"])  # the risk manager's own sums, 8 places each
    assert abs(risk_days - D(report["realized_pnl"])) < D("1e-6")


def test_every_skipped_opportunity_is_scored_under_the_same_fill_model(permissive_report):
    report = permissive_report
    skipped = [o for o in report["opportunities"] if o["trade"] is None]
    assert skipped and report["skipped"]["count"] == len(skipped)
    assert all(o["would_realize"] is not None and o["would_realize"]["outcome"] for o in skipped)
    assert all(o["reasons"] for o in skipped)
    total = sum((D(o["would_realize"]["realized_pnl"] or 0) for o in skipped), D(0))
    assert D(report["skipped"]["would_realize"]) == total
    for code, figures in report["skipped"]["by_reason"].items():
        assert figures["count"] == sum(code in o["reasons"] for o in skipped)
    assert all(o["would_realize"] is None for o in report["opportunities"] if o["trade"] is not None)
    for kind in ("forex", "binary"):
        calibration = report["calibration"][kind]
        assert calibration["count"] == sum(b["count"] for b in calibration["bins"]) > 0
        assert D(0) <= D(calibration["brier"]) <= D(1)


@pytest.mark.django_db
def test_tight_limits_hold_on_every_simulated_day_and_their_trips_are_reported(market):
    tight = {**PERMISSIVE, "limits": {**PERMISSIVE["limits"], "max_trades_per_day": 4}}
    report = replay_report(market, tight)
    check_report(report, market, tight["limits"])
    assert report["days"][0]["trades"] == 4
    assert report["limit_trips"]["TRADE_COUNT"] > 0
    assert report["skipped"]["by_reason"]["TRADE_COUNT"]["count"] > 0


@pytest.mark.django_db
def test_a_window_replays_only_its_span(market):
    reader = RecordingReader(market)
    report = replay_report(market, PERMISSIVE, start=reader.start + 20 * 60_000, end=reader.start + 30 * 60_000)
    assert report["recording"]["start"] == reader.start + 20 * 60_000
    assert all(reader.start + 20 * 60_000 <= o["market_ts"] <= reader.start + 30 * 60_000 for o in report["opportunities"])


def run_replay(*args, check=True, **popen):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    return subprocess.run([sys.executable, str(MANAGE), "replay", *map(str, args)], capture_output=True, text=True,
                          env=env, check=check, timeout=600, **popen)


@pytest.fixture
def sqlite_pass():
    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.sqlite3":
        pytest.skip("the replay command runs on its own in-memory SQLite whatever DATABASE_URL says: the SQLite pass runs it")


@pytest.mark.django_db
def test_the_command_writes_the_same_report_twice_and_never_touches_the_live_database(market, tmp_path, sqlite_pass):
    overrides = tmp_path / "settings.json"
    overrides.write_text(json.dumps(PERMISSIVE))
    window = ["--to", START + 20 * 60_000]  # the forex lead hour and 20 minutes of all three kinds: twice
    first = run_replay("--recording", market, "--settings-file", overrides, *window, "--report", tmp_path / "one")
    run_replay("--recording", market, "--settings-file", overrides, *window, "--report", tmp_path / "two")
    one, two = (tmp_path / "one" / "report.json").read_bytes(), (tmp_path / "two" / "report.json").read_bytes()
    assert one == two
    report = json.loads(one)
    assert report["complete"] and report["trades"]
    assert report["settings"]["limits"]["max_trades_per_day"] == 10_000
    assert report["settings"]["controls"]["auto_execute"] is True
    assert "replay complete" in first.stdout and "report.json" in first.stdout
    for name in ("report.html", "equity.png", "drawdown.png", "calibration.png", "pnl_by_route.png"):
        assert (tmp_path / "one" / name).is_file(), name
    trades_csv = (tmp_path / "one" / "trades.csv").read_text(encoding="utf-8")
    assert trades_csv == (tmp_path / "two" / "trades.csv").read_text(encoding="utf-8")
    header, *rows = csv.reader(io.StringIO(trades_csv))
    api_export = client_for(staff=False).get("/api/trades/export/")
    assert header == next(csv.reader(io.StringIO(b"".join(api_export.streaming_content).decode())))
    assert [int(row[0]) for row in rows] == [trade["id"] for trade in report["trades"]]
    assert [row[header.index("realized_pnl")] for row in rows] == [trade["realized_pnl"] or "" for trade in report["trades"]]
    assert not Opportunity.objects.exists()


@pytest.mark.parametrize("content, message", [
    ('{"limits": {"max_trades_per_day": -1}}', "limits: max_trades_per_day"),
    ('{"limits": {"max_trades": 5}}', "limits has no field max_trades"),
    ('{"risk": {}}', "unknown section(s) risk"),
    ('{"thresholds": {"binary": {"min_probability": "1.5"}}}', "thresholds.binary: min_probability"),
    ('{"intervals_s": {"forex": 0}}', "intervals_s.forex must be a positive number"),
    ('{"limits": ', "line 1"),
])
def test_a_bad_settings_file_is_refused_with_the_field_named(market, tmp_path, content, message, sqlite_pass):
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    done = run_replay("--recording", market, "--settings-file", bad, "--report", tmp_path / "out", check=False)
    assert done.returncode != 0 and message in done.stderr, done.stderr
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_missing_recording_and_a_bad_time_are_refused(tmp_path, sqlite_pass):
    done = run_replay("--recording", tmp_path / "nowhere", "--report", tmp_path / "out", check=False)
    assert done.returncode != 0 and "not a recording" in done.stderr
    done = run_replay("--recording", tmp_path, "--from", "yesterday", "--report", tmp_path / "out", check=False)
    assert done.returncode != 0 and "ISO 8601" in done.stderr


def read_terminal(master: int, into: list) -> None:
    """What a process writes to the terminal `master` controls, until it closes."""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the process's side closed
            break
        if not chunk:
            break
        into.append(chunk.decode(errors="replace"))
    os.close(master)


def test_ctrl_c_leaves_a_partial_report(market, tmp_path, sqlite_pass):
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    master, terminal = pty.openpty()  # stderr a terminal, as at a shell: the progress bar redraws every 0.5 s
    process = subprocess.Popen([sys.executable, str(MANAGE), "replay", "--recording", str(market), "--speed", "60",
                                "--report", str(tmp_path / "out")], env=env, stdout=subprocess.PIPE,
                               stderr=terminal, text=True, start_new_session=True)
    os.close(terminal)
    shown = []
    reading = threading.Thread(target=read_terminal, args=(master, shown), daemon=True)
    reading.start()
    # 40 minutes at 60x take 40 s: interrupted once the bar shows it under way, far from the end
    wait_for(lambda: any(float(done) > 0 for done in re.findall(r"\]\s+([0-9.]+)%", "".join(shown))), 60,
             "the replay under way")
    os.killpg(process.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole process group
    out, _ = process.communicate(timeout=120)
    reading.join(10)
    err = "".join(shown)
    assert process.returncode == 0, err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    reader = RecordingReader(market)
    assert report["complete"] is False and reader.start < report["simulated_to"] < reader.end
    assert "PARTIAL" in out
    assert D(report["final_equity"]) == (D(report["start_equity"]) + D(report["realized_pnl"]) + D(report["unrealized_pnl"]))


@pytest.mark.shared
@pytest.mark.parametrize("name, hours", [
    ("crypto-xvenue-2022-12-13", 3),
    ("fx-gbpusd-1m-2012-02", 6),
    ("coinbase-oanda-2018-04-04", 2),
    ("fx-ticks-2014-05-02", 1),
])
def test_real_recordings_replay_with_the_accounting_and_limits_holding(name, hours, tmp_path, sqlite_pass):
    recording = shared_recording(name)
    overrides = tmp_path / "settings.json"
    limits = {**PERMISSIVE["limits"], "max_trades_per_day": 25, "max_daily_loss": "500"}
    overrides.write_text(json.dumps({**PERMISSIVE, "limits": limits}))
    reader = RecordingReader(recording)
    window = ["--to", reader.start + hours * 3_600_000]
    run_replay("--recording", recording, "--settings-file", overrides, *window, "--report", tmp_path / "one")
    report = json.loads((tmp_path / "one" / "report.json").read_text())
    assert report["complete"] and report["summary"]["market_events"] > 0
    check_report(report, recording, limits)
    if name == "crypto-xvenue-2022-12-13":
        run_replay("--recording", recording, "--settings-file", overrides, *window, "--report", tmp_path / "two")
        assert (tmp_path / "one" / "report.json").read_bytes() == (tmp_path / "two" / "report.json").read_bytes()
