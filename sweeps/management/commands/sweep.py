"""`manage.py sweep --recording DIR --grid GRID.json --report OUT [--split 0.6]` (or `--resume ID --report OUT`).

Replays one recording under every combination of the grid's settings, each replay a task on
the `replay` queue (any number of workers on any number of hosts share them; each replay in
its own in-memory database). Prints each replay as it finishes; Ctrl-C cancels the replays not
started and writes the report of those finished; `--resume ID` queues a sweep's unfinished
runs again. docs/sweeps.md.
"""
from __future__ import annotations

import json
import signal
import time
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from execution.management.commands.replay import parse_ts, read_settings_file
from sweeps import services, tasks
from sweeps.grid import GridError
from sweeps.models import Sweep, SweepRun
from sweeps.report import build_sweep_report, write_sweep_report

POLL_S = 0.5


def read_grid(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise CommandError(f"--grid: cannot read {path}: {exc.strerror}")
    except json.JSONDecodeError as exc:
        raise CommandError(f"--grid: {path} line {exc.lineno}: {exc.msg}")


def parse_split(text: str) -> Decimal:
    try:
        split = Decimal(text)
    except InvalidOperation:
        split = Decimal(0)
    if not Decimal(0) < split < Decimal(1) or split != split.quantize(Decimal("0.0001")):
        raise CommandError(f"--split: {text!r} must be a number between 0 and 1 with at most 4 decimals "
                           "(the in-sample share of the market time)")
    return split


def describe(run: SweepRun) -> str:
    return ", ".join(f"{key}={json.dumps(value)}" for key, value in sorted(run.combination.items())) or "(base settings)"


class Command(BaseCommand):
    help = "Replay one recording under every combination of a grid of settings, on the `replay` queue's workers."

    def add_arguments(self, parser):
        parser.add_argument("--recording", help="recording directory (the same path on every worker host)")
        parser.add_argument("--grid", help="JSON: the --settings-file keys, each with a list of values")
        parser.add_argument("--report", required=True, help="directory to write report.json and report.html into")
        parser.add_argument("--split", default="0.6", help="in-sample share of the market time (default 0.6)")
        parser.add_argument("--from", dest="from_ts", help="start: epoch ms or ISO 8601 time (default: the recording's start)")
        parser.add_argument("--to", dest="to_ts", help="end: epoch ms or ISO 8601 time (default: the recording's end)")
        parser.add_argument("--settings-file", help="JSON settings every run starts from (as `replay --settings-file`)")
        parser.add_argument("--resume", type=int, metavar="ID", help="take sweep ID up again: queue its runs not done")

    def handle(self, *args, recording, grid, report, split, from_ts, to_ts, settings_file, resume, **options):
        sweep = self.resumed(resume) if resume is not None else self.created(
            recording, grid, split, from_ts, to_ts, settings_file)
        total = sweep.runs.count()
        seen = set(sweep.runs.filter(status=SweepRun.DONE).values_list("pk", flat=True))
        self.stdout.write(f"sweep {sweep.pk}: {total} settings on {sweep.recording_name}, in-sample to "
                          f"{sweep.split_ts} ({sweep.split.normalize()} of the market time); queue `replay`"
                          + (f"; {len(seen)} done before" if seen else ""))
        interrupted = []
        previous = signal.signal(signal.SIGINT, lambda signum, frame: interrupted.append(signum))
        try:
            tasks.queue_runs(sweep=sweep)
            self.warn_without_consumers()
            self.follow(sweep, total, interrupted, seen)
        finally:
            signal.signal(signal.SIGINT, previous)
        if interrupted:
            cancelled = tasks.revoke_queued(sweep=sweep)
            self.stdout.write(f"interrupted: {cancelled} replays not started are cancelled; the report holds those "
                              f"finished (manage.py sweep --resume {sweep.pk} takes it up again)")
        else:
            services.finish(sweep=sweep)
        sweep.refresh_from_db()
        written = write_sweep_report(build_sweep_report(sweep), Path(report))
        self.stdout.write(f"report: {written[0]} and {written[1]}")

    def resumed(self, sweep_id: int) -> Sweep:
        sweep = Sweep.objects.filter(pk=sweep_id).first()
        if sweep is None:
            raise CommandError(f"--resume: there is no sweep {sweep_id}")
        services.requeue_unfinished(sweep=sweep)
        return sweep

    def created(self, recording, grid, split, from_ts, to_ts, settings_file) -> Sweep:
        if not recording or not grid:
            raise CommandError("--recording and --grid are required (or --resume ID)")
        if not (Path(recording) / "manifest.json").is_file():
            raise CommandError(f"--recording: {recording} is not a recording (no manifest.json)")
        base = read_settings_file(settings_file) if settings_file else {}
        try:
            sweep = services.create_sweep(
                recording=recording, grid=read_grid(grid), base=base, split=parse_split(split),
                start=None if from_ts is None else parse_ts(from_ts), end=None if to_ts is None else parse_ts(to_ts))
        except (GridError, ValueError) as exc:
            raise CommandError(str(exc))
        return sweep

    def warn_without_consumers(self) -> None:
        try:
            consumers = tasks.replay_consumers()
        except Exception as exc:  # a broker that does not answer the control broadcast: only a hint is lost
            self.stderr.write(f"(could not ask the workers which queues they consume: {exc})")
            return
        if not consumers:
            self.stderr.write("no worker answered that it consumes the `replay` queue: the replays wait for one "
                              "(`manage.py run` starts one; or: celery -A trifecta_site worker -Q replay)")

    def follow(self, sweep: Sweep, total: int, interrupted: list, seen: set) -> None:
        """Print each run as it finishes, until all have or Ctrl-C."""
        while not interrupted:
            finished = list(SweepRun.objects.filter(sweep=sweep, status__in=[SweepRun.DONE, SweepRun.FAILED])
                            .exclude(pk__in=seen).order_by("finished_at", "index"))
            for run in finished:
                seen.add(run.pk)
                self.stdout.write(self.line(run, len(seen), total))
            self.stdout.flush()
            if len(seen) >= total:
                return
            time.sleep(POLL_S)

    @staticmethod
    def line(run: SweepRun, done: int, total: int) -> str:
        where = f"{run.wall_s:.1f} s on {run.worker}" + (f", attempt {run.attempts}" if run.attempts > 1 else "")
        if run.status == SweepRun.FAILED:
            return f"[{done}/{total}] FAILED {describe(run)} ({where}): {run.error.splitlines()[0] if run.error else ''}"
        return (f"[{done}/{total}] {describe(run)}: in-sample P&L {Decimal(run.in_sample['pnl']):.2f} "
                f"({run.in_sample['trades']} trades), out-of-sample {Decimal(run.out_of_sample['pnl']):.2f} "
                f"({run.out_of_sample['trades']} trades) ({where})")
