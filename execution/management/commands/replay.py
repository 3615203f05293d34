"""`manage.py replay --recording DIR [--from TS --to TS] [--settings-file FILE.json] [--speed max] --report OUT_DIR`.

Runs the whole desk over a recording in an isolated database and writes the report
(README, "Replay"). The command re-runs itself in a child process under
`trifecta_site.replay_settings` (a private in-memory database, no channel layer), so the
live desk's data is never read or written; Ctrl-C stops the replay and still writes the
report of what happened so far, marked partial.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from decisions.models import Controls, RiskLimits
from execution.models import ExecutionSettings
from execution.replay import DEFAULT_INTERVALS_S, Replay
from execution.replay_database import migrated_database
from execution.report import THRESHOLD_ROWS, build_report, write_report, write_trades_csv
from execution.report_html import write_html_report
from scanners.feeds.base import FeedError
from scanners.feeds.replay import RecordingReader
from scanners.models import BinaryPayout
from trifecta_site.api import settings_serializer

REPLAY_SETTINGS = "trifecta_site.replay_settings"
SECTIONS = ("controls", "limits", "execution", "thresholds", "intervals_s", "payouts")


def parse_ts(text: str) -> int:
    """Epoch ms, or an ISO 8601 time (UTC unless it says otherwise)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise CommandError(f"{text!r} is neither epoch milliseconds nor an ISO 8601 time (e.g. 2018-04-03T12:00:00Z)")
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return int(when.timestamp() * 1000)


def parse_speed(text: str) -> float | None:
    """None for `max` (as fast as the machine allows), else simulated seconds per wall second."""
    if text == "max":
        return None
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not speed > 0:
        raise CommandError(f"--speed: {text!r} must be `max` or a positive number (simulated seconds per second)")
    return speed


def read_settings_file(path: str) -> dict:
    try:
        overrides = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"--settings-file: cannot read {path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        raise CommandError(f"--settings-file: {path} line {exc.lineno}: {exc.msg}")
    if not isinstance(overrides, dict):
        raise CommandError(f"--settings-file: {path} must hold a JSON object with any of: {', '.join(SECTIONS)}")
    unknown = sorted(set(overrides) - set(SECTIONS))
    if unknown:
        raise CommandError(f"--settings-file: unknown section(s) {', '.join(unknown)}; expected any of: {', '.join(SECTIONS)}")
    return overrides


def apply_settings(overrides: dict) -> None:
    """Defaults for a replay (auto-execute on), then the file's values, validated like the admin forms."""

    rows = {"controls": Controls, "limits": RiskLimits, "execution": ExecutionSettings}
    controls = Controls.get_solo()
    controls.auto_execute, controls.kill_switch = True, False
    controls.save()
    targets = [(name, rows[name], overrides.get(name)) for name in rows]
    targets += [(f"thresholds.{kind}", model, (overrides.get("thresholds") or {}).get(kind)) for kind, model in THRESHOLD_ROWS.items()]
    unknown_kinds = sorted(set(overrides.get("thresholds") or {}) - set(THRESHOLD_ROWS))
    if unknown_kinds:
        raise CommandError(f"--settings-file: thresholds has no kind {', '.join(unknown_kinds)}")
    for name, model, values in targets:
        if not values:
            continue
        if not isinstance(values, dict):
            raise CommandError(f"--settings-file: {name} must be an object of field: value")
        serializer = settings_serializer(model)(model.get_solo(), data=values, partial=True)
        fields = set(serializer.fields)
        unknown = sorted(set(values) - fields)
        if unknown:
            raise CommandError(f"--settings-file: {name} has no field {', '.join(unknown)}")
        if not serializer.is_valid():
            problems = "; ".join(f"{field}: {' '.join(map(str, errors))}" for field, errors in serializer.errors.items())
            raise CommandError(f"--settings-file: {name}: {problems}")
        row = serializer.instance
        for field, value in serializer.validated_data.items():
            setattr(row, field, value)
        row.save()
    for symbol, payout in (overrides.get("payouts") or {}).items():
        row = BinaryPayout(symbol=symbol, payout=payout)
        try:
            row.full_clean(exclude=["symbol"])
        except Exception as exc:
            raise CommandError(f"--settings-file: payouts.{symbol}: {exc}")
        BinaryPayout.objects.update_or_create(symbol=symbol, defaults={"payout": row.payout})


def intervals_from(overrides: dict) -> dict:

    intervals = overrides.get("intervals_s") or {}
    unknown = sorted(set(intervals) - set(DEFAULT_INTERVALS_S))
    if unknown:
        raise CommandError(f"--settings-file: intervals_s has no {', '.join(unknown)}; expected {', '.join(DEFAULT_INTERVALS_S)}")
    for name, value in intervals.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
            raise CommandError(f"--settings-file: intervals_s.{name} must be a positive number of seconds")
    return intervals


class Progress:
    """A one-line progress bar on stderr: simulated time, share of the span, ETA; paces `--speed N`."""

    def __init__(self, stream, *, start: int, end: int, speed: float | None):
        self.stream, self.start, self.end, self.speed = stream, start, end, speed
        self.began = time.monotonic()
        self.shown = 0.0
        self.tty = stream.isatty()

    def __call__(self, result) -> None:
        if self.speed is not None:
            due = self.began + (result.simulated_to - self.start) / 1000 / self.speed
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        now = time.monotonic()
        if now - self.shown < (0.5 if self.tty else 10):
            return
        self.shown = now
        self.stream.write(self.line(result), ending="\r" if self.tty else "\n")
        self.stream.flush()

    def line(self, result) -> str:
        span = max(1, self.end - self.start)
        done = min(1.0, max(0.0, (result.simulated_to - self.start) / span))
        elapsed = time.monotonic() - self.began
        eta = elapsed / done - elapsed if done > 0 else 0
        bar = "#" * int(done * 30)
        at = datetime.fromtimestamp(result.simulated_to / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        return (f"[{bar:<30}] {done:6.1%}  {at} UTC  {result.opportunities} opportunities  "
                f"{result.executed} executed  ETA {int(eta // 60)}:{int(eta % 60):02d}  ")

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")


class Command(BaseCommand):
    help = "Replay the whole desk over a recording in an isolated database and write a report."

    def add_arguments(self, parser):
        parser.add_argument("--recording", required=True, help="recording directory")
        parser.add_argument("--from", dest="from_ts", help="start: epoch ms or ISO 8601 time (default: the recording's start)")
        parser.add_argument("--to", dest="to_ts", help="end: epoch ms or ISO 8601 time (default: the recording's end)")
        parser.add_argument("--settings-file", help="JSON overrides: controls, limits, execution, thresholds.{kind}, intervals_s, payouts")
        parser.add_argument("--speed", default="max", help="`max` (default) or simulated seconds per wall-clock second")
        parser.add_argument("--report", required=True, help="directory to write report.json, trades.csv, report.html and charts into")

    def handle(self, *args, recording, from_ts, to_ts, settings_file, speed, report, **options):
        start = None if from_ts is None else parse_ts(from_ts)
        end = None if to_ts is None else parse_ts(to_ts)
        pace = parse_speed(speed)
        overrides = read_settings_file(settings_file) if settings_file else {}
        intervals = intervals_from(overrides)
        if not (Path(recording) / "manifest.json").is_file():
            raise CommandError(f"--recording: {recording} is not a recording (no manifest.json)")
        if not settings.REPLAY_ISOLATED:
            return self.run_isolated(options["verbosity"])
        return self.replay(recording, start, end, pace, overrides, intervals, Path(report))

    def run_isolated(self, verbosity: int) -> None:
        """Run this same command in a child process on the replay settings; wait for it, Ctrl-C included."""
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": REPLAY_SETTINGS, "PYTHONHASHSEED": "0"}
        command = [sys.executable, str(Path(settings.BASE_DIR) / "manage.py"), "replay", *sys.argv[2:]]
        if sys.argv[1:2] != ["replay"]:  # called through call_command: rebuild the arguments
            raise CommandError("manage.py replay must be run from the command line (it starts its own process)")
        # Ctrl-C reaches the child too, which writes its partial report: this process waits for it. (A
        # handler, not SIG_IGN: an ignored signal would stay ignored in the child.)
        previous = signal.signal(signal.SIGINT, lambda signum, frame: None)
        try:
            code = subprocess.call(command, env=env)
        finally:
            signal.signal(signal.SIGINT, previous)
        if code:
            sys.exit(code)

    def replay(self, recording, start, end, pace, overrides, intervals, out_dir: Path) -> None:

        migrated_database()
        apply_settings(overrides)
        try:
            reader = RecordingReader(recording)
            replay = Replay(reader, start=start, end=end, intervals=intervals)
        except (FeedError, ValueError) as exc:
            raise CommandError(str(exc))
        progress = Progress(self.stderr, start=replay.start, end=replay.end, speed=pace)
        replay.progress = progress
        try:
            result = replay.run()
        except FeedError as exc:
            raise CommandError(str(exc))
        progress.finish()
        report = build_report(result=result, recording_name=reader.name)
        written = [write_report(report, out_dir), write_trades_csv(out_dir), *write_html_report(report, out_dir)]
        state = "complete" if result.complete else "PARTIAL (interrupted)"
        self.stdout.write(
            f"replay {state}: {result.market_events} market events, {result.opportunities} opportunities, "
            f"{result.executed} executed in {result.wall_s:.1f} s "
            f"({(result.simulated_to - result.start) / 1000 / max(result.wall_s, 1e-9):,.0f}x real time)\n"
            f"final equity {report['final_equity']} (start {report['start_equity']}); report: {written[0]}"
        )
