"""Writing sweeps: creating one with its runs, running one replay in a worker, cancelling, applying a result."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from execution.report import SETTINGS_ROWS, THRESHOLD_ROWS
from scanners.feeds.base import FeedError
from scanners.feeds.replay import RecordingReader
from scanners.models import BinaryPayout
from trifecta_site import embedded
from trifecta_site.api import settings_serializer
from trifecta_site.models import ConfigChange

from . import grid as grids
from .models import Sweep, SweepRun
from .walk_forward import figures, split_ts

REPLAY_SETTINGS = "trifecta_site.replay_settings"
ERROR_TAIL = 4000
# A replay's scan interval -> the live desk's beat entry it stands for (trifecta_site.schedule).
SCHEDULE_ENTRIES = {"arbitrage": "scan arbitrage", "forex": "scan forex", "binary": "scan binary", "monitor": "monitor positions"}


def create_sweep(*, recording: str, grid: dict, base: dict | None = None, start: int | None = None,
                 end: int | None = None, split: Decimal = Decimal("0.6")) -> Sweep:
    """A sweep and one queued run per combination of the grid, every combination validated first
    (GridError, ValueError: nothing is written)."""
    runs = grids.expand(grid, base=base or {})
    try:
        reader = RecordingReader(recording)
    except FeedError as exc:
        raise ValueError(f"--recording: {exc}") from exc
    first = reader.start if start is None else max(start, reader.start)
    last = reader.end if end is None else min(end, reader.end)
    if last <= first:
        raise ValueError("the sweep's window holds no market time of the recording (check --from/--to)")
    with transaction.atomic():
        sweep = Sweep.objects.create(
            recording=str(Path(recording).resolve()), recording_name=reader.name, start_ts=first, end_ts=last,
            split=split, split_ts=split_ts(start=first, end=last, split=split), grid=grid, base=base or {})
        SweepRun.objects.bulk_create(
            SweepRun(sweep=sweep, index=index, combination=combination, settings=settings,
                     settings_key=grids.canonical(settings))
            for index, (combination, settings) in enumerate(runs))
    return sweep


def replay_command(run: SweepRun, *, settings_file: Path, report_dir: Path) -> list[str]:
    sweep = run.sweep
    return [sys.executable, str(Path(django_settings.BASE_DIR) / "manage.py"), "sweep_replay",
            "--recording", sweep.recording, "--from", str(sweep.start_ts), "--to", str(sweep.end_ts),
            "--settings-file", str(settings_file), "--report", str(report_dir)]


def replay_sweep_run(*, run_id: int, worker: str = "") -> str:
    """Replay one run in a child process with its own in-memory database (as `manage.py replay`)
    and store its walk-forward figures. A run already done or cancelled is left as it is (a
    redelivered message); a run some worker started and never finished is started again."""
    claimed = SweepRun.objects.filter(pk=run_id, status__in=[SweepRun.QUEUED, SweepRun.RUNNING]).update(
        status=SweepRun.RUNNING, attempts=F("attempts") + 1, worker=worker[:200], started_at=timezone.now(), error="")
    if not claimed:
        return "skipped"
    run = SweepRun.objects.select_related("sweep").get(pk=run_id)
    began = time.monotonic()
    try:
        return _replay_and_store(run, began)
    except Exception as exc:  # whatever stopped it, the run says so instead of staying `running` for ever
        _fail(run_id, f"{type(exc).__name__}: {exc}", began)
        raise


def _fail(run_id: int, error: str, began: float) -> None:
    SweepRun.objects.filter(pk=run_id, status=SweepRun.RUNNING).update(
        status=SweepRun.FAILED, error=error[-ERROR_TAIL:], finished_at=timezone.now(), wall_s=time.monotonic() - began)


def _replay_and_store(run: SweepRun, began: float) -> str:
    run_id = run.pk
    with tempfile.TemporaryDirectory(prefix="trifecta-sweep-") as folder:
        folder = Path(folder)
        settings_file, report_dir, log = folder / "settings.json", folder / "report", folder / "replay.log"
        settings_file.write_text(json.dumps(run.settings), encoding="utf-8")
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": REPLAY_SETTINGS, "PYTHONHASHSEED": "0"}
        with log.open("wb") as output:
            # Its own process group, ended with the worker's process when that dies (embedded.spawn).
            child = embedded.spawn(replay_command(run, settings_file=settings_file, report_dir=report_dir),
                                   env=env, name="replay", stdout=output, stderr=subprocess.STDOUT)
            code = child.wait()
        report_file = report_dir / "report.json"
        report = json.loads(report_file.read_text(encoding="utf-8")) if code == 0 and report_file.is_file() else None
        if report is None or not report["complete"]:
            tail = log.read_text(encoding="utf-8", errors="replace")[-ERROR_TAIL:]
            _fail(run_id, f"replay exited with code {code}\n{tail}", began)
            return "failed"
    parts = figures(report, split_at=run.sweep.split_ts)
    SweepRun.objects.filter(pk=run_id, status=SweepRun.RUNNING).update(
        status=SweepRun.DONE, in_sample=parts["in_sample"], out_of_sample=parts["out_of_sample"], whole=parts["whole"],
        finished_at=timezone.now(), wall_s=time.monotonic() - began)
    return "done"


def revoke_queued(*, sweep: Sweep) -> list[str]:
    """Runs not started yet are cancelled (a worker that takes one later leaves it); their task ids, to revoke."""
    with transaction.atomic():
        queued = list(SweepRun.objects.select_for_update().filter(sweep=sweep, status=SweepRun.QUEUED)
                      .values_list("pk", "task_id"))
        SweepRun.objects.filter(pk__in=[pk for pk, _ in queued], status=SweepRun.QUEUED).update(
            status=SweepRun.CANCELLED, finished_at=timezone.now())
        Sweep.objects.filter(pk=sweep.pk).update(status=Sweep.CANCELLED, finished_at=timezone.now())
    return [task_id for _, task_id in queued if task_id]


def requeue_unfinished(*, sweep: Sweep) -> int:
    """A sweep taken up again (`sweep --resume`): every run not done is queued anew (a run still
    replaying in a live worker may then run twice: harmless, the first result is kept)."""
    with transaction.atomic():
        count = SweepRun.objects.filter(sweep=sweep).exclude(status=SweepRun.DONE).update(
            status=SweepRun.QUEUED, error="", finished_at=None)
        Sweep.objects.filter(pk=sweep.pk).update(status=Sweep.RUNNING, finished_at=None)
    return count


def finish(*, sweep: Sweep) -> None:
    Sweep.objects.filter(pk=sweep.pk, status=Sweep.RUNNING).update(status=Sweep.COMPLETE, finished_at=timezone.now())


class NotApplicable(ValueError):
    """A run whose settings cannot be applied to the live desk (not done, or refused by a field's validation)."""


def _audit(*, setting: str, field: str, old, new, user, now) -> None:
    ConfigChange.objects.create(setting=setting, field=field, old_value=str(old), new_value=str(new),
                                changed_by=user if getattr(user, "is_authenticated", False) else None, changed_at=now)


def apply_run_settings(*, run: SweepRun, user) -> int:
    """The run's settings onto the live desk's configuration, in one transaction, every change in
    the configuration change log with the user (as an admin or API edit is); the number of rows written."""
    if run.status != SweepRun.DONE:
        raise NotApplicable(f"run {run.index} of sweep {run.sweep_id} is {run.status}: only a finished run can be applied")
    values = run.settings
    now = timezone.now()
    before = ConfigChange.objects.count()
    with transaction.atomic():
        targets = [(name, model, values.get(name)) for name, model in SETTINGS_ROWS.items()]
        targets += [(f"thresholds.{kind}", model, (values.get("thresholds") or {}).get(kind))
                    for kind, model in THRESHOLD_ROWS.items()]
        for name, model, fields in targets:
            if not fields:
                continue
            row = model.get_solo()
            serializer = settings_serializer(model)(row, data=fields, partial=True)
            if not serializer.is_valid():
                problems = "; ".join(f"{name}.{field}: {' '.join(map(str, errors))}" for field, errors in serializer.errors.items())
                raise NotApplicable(f"the live desk refuses {problems}")
            for field, value in serializer.validated_data.items():
                setattr(row, field, value)
            row.save(changed_by=user)  # writes its ConfigChange rows, as the admin and the API do
        for symbol, payout in (values.get("payouts") or {}).items():
            old = BinaryPayout.objects.filter(symbol=symbol).values_list("payout", flat=True).first()
            BinaryPayout.objects.update_or_create(symbol=symbol, defaults={"payout": Decimal(str(payout))})
            _audit(setting=BinaryPayout._meta.verbose_name, field=symbol, old="" if old is None else old, new=payout,
                   user=user, now=now)
        for name, seconds in (values.get("intervals_s") or {}).items():
            task = PeriodicTask.objects.filter(name=SCHEDULE_ENTRIES[name]).select_related("interval").first()
            if task is None:
                continue
            whole = float(seconds).is_integer()
            every, period = (int(seconds), IntervalSchedule.SECONDS) if whole else (round(seconds * 1_000_000), IntervalSchedule.MICROSECONDS)
            old = f"{task.interval.every} {task.interval.period}" if task.interval else ""
            task.interval = IntervalSchedule.objects.get_or_create(every=every, period=period)[0]
            task.save()
            _audit(setting="beat schedule", field=task.name, old=old, new=f"{every} {period}", user=user, now=now)
        _audit(setting="sweep", field="applied", old="", new=f"sweep {run.sweep_id} run {run.index}: {run.settings_key}",
               user=user, now=now)
    return ConfigChange.objects.count() - before
