"""Sweep throughput: 16 settings of one recording replayed by 2 workers, against the same 16
replays one after another in the same run.

The recording is the demo shipped with the desk (EUR/USD ticks at two brokers), a 30-minute
window with binary and forex trades; the grid is 4 binary probability thresholds × 4 daily
trade limits. The baseline runs the command a worker runs for each replay (`manage.py
sweep_replay`, its own in-memory database) 16 times in a row; the sweep runs `manage.py
sweep` with two `celery worker -Q replay --concurrency 1` processes on a bundled Redis and a
SQLite database of its own, timed from the command's start to its exit (queueing, progress,
the report included). Both start from the kept migrated schema (one replay before either).
The sweep's stored figures are checked against the baseline's reports. `ratio` = baseline /
value: how many times faster the sweep went. Run: `make bench-sweep`.
"""
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from common import ROOT, metric, write_results

sys.path.insert(0, str(ROOT))

from trifecta_site import embedded  # noqa: E402

RECORDING = ROOT / "trifecta_site" / "demo" / "eurusd-2014-05-02"
WINDOW = (1399001700000, 1399003500000)
GRID = {"thresholds": {"binary": {"auto_min_probability": ["0.75", "0.78", "0.8", "0.85"]}},
        "limits": {"max_trades_per_day": [50, 10, 3, 1]}}
TARGET = 1.7


def load() -> float:
    return os.getloadavg()[0]


def children_cpu_s() -> float:
    """CPU seconds of the processes this one started and waited for, theirs included (the replays)."""
    used = resource.getrusage(resource.RUSAGE_CHILDREN)
    return used.ru_utime + used.ru_stime


def manage(*args, env, **kwargs):
    return subprocess.run([sys.executable, str(ROOT / "manage.py"), *args], env=env, cwd=ROOT, check=True, **kwargs)


def sequential(env: dict, folder: Path, combinations: list[dict]) -> tuple[float, list[dict]]:
    """The baseline: each setting's replay, one after another, as a worker runs it."""
    replay_env = {**env, "DJANGO_SETTINGS_MODULE": "trifecta_site.replay_settings", "PYTHONHASHSEED": "0"}
    reports = []
    began = time.perf_counter()
    for index, settings in enumerate(combinations):
        path = folder / f"settings-{index}.json"
        path.write_text(json.dumps(settings))
        manage("sweep_replay", "--recording", str(RECORDING), "--from", str(WINDOW[0]), "--to", str(WINDOW[1]),
               "--settings-file", str(path), "--report", str(folder / f"seq-{index}"), env=replay_env)
        reports.append(json.loads((folder / f"seq-{index}" / "report.json").read_text()))
    return time.perf_counter() - began, reports


def swept(env: dict, folder: Path) -> float:
    workers = [embedded.spawn([sys.executable, "-m", "celery", "-A", "trifecta_site", "worker", "-Q", "replay",
                               "--concurrency", "1", "--without-gossip", "--without-mingle", "-n", f"bench{n}@%h",
                               "--loglevel", "WARNING"], env=env, name=f"worker{n}", cwd=ROOT,
                              stdout=(folder / f"worker{n}.log").open("wb"), stderr=subprocess.STDOUT)
               for n in (1, 2)]
    try:
        ready = f"{sys.executable} -m celery -A trifecta_site inspect ping --timeout 2".split()
        deadline = time.monotonic() + 120
        while subprocess.run(ready, env=env, cwd=ROOT, capture_output=True, text=True).stdout.count("pong") < 2:
            if time.monotonic() > deadline or any(worker.poll() is not None for worker in workers):
                logs = "".join((folder / f"worker{n}.log").read_text()[-2000:] for n in (1, 2))
                raise RuntimeError(f"the two replay workers did not answer within 120 s:\n{logs}")
        grid = folder / "grid.json"
        grid.write_text(json.dumps(GRID))
        began = time.perf_counter()
        manage("sweep", "--recording", str(RECORDING), "--from", str(WINDOW[0]), "--to", str(WINDOW[1]),
               "--grid", str(grid), "--report", str(folder / "sweep"), env=env)
        return time.perf_counter() - began
    finally:
        embedded.stop(workers)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="trifecta-bench-sweep-") as tmp:
        folder = Path(tmp)
        port = embedded.free_port()
        redis = embedded.start_redis(directory=folder / "redis", port=port, env=dict(os.environ))
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "TRIFECTA_VAR_DIR": str(folder / "var"),
               "DATABASE_URL": f"sqlite:///{folder / 'bench.sqlite3'}", "REDIS_URL": f"redis://127.0.0.1:{port}/0",
               "PYTHONUNBUFFERED": "1"}
        try:
            manage("migrate", "--verbosity", "0", env=env)
            os.environ.update({key: env[key] for key in ("TRIFECTA_VAR_DIR", "DATABASE_URL", "REDIS_URL")})
            import django

            django.setup()
            from sweeps.grid import expand
            from sweeps.models import SweepRun
            from sweeps.walk_forward import PARTS, figures

            combinations = [settings for _, settings in expand(GRID)]
            sequential(env, folder, combinations[:1])  # the kept migrated schema, for both sides
            load_before = load()
            print(f"{len(combinations)} settings on {RECORDING.name} {WINDOW[0]}-{WINDOW[1]}, {os.cpu_count()} CPUs, "
                  f"load average {load_before:.1f}")
            cpu = children_cpu_s()
            base_s, reports = sequential(env, folder, combinations)
            base_cpu, cpu = children_cpu_s() - cpu, children_cpu_s()
            print(f"sequential: {base_s:.1f} s ({base_s / len(combinations):.1f} s a replay), {base_cpu:.0f} CPU s "
                  f"({base_cpu / base_s:.2f} cores), load {load():.1f}")
            sweep_s = swept(env, folder)
            sweep_cpu = children_cpu_s() - cpu  # with the two workers' start and the ping that waits for them
            load_after = load()
            print(f"sweep on 2 workers: {sweep_s:.1f} s, {sweep_cpu:.0f} CPU s (at most {sweep_cpu / sweep_s:.2f} cores), "
                  f"load {load_after:.1f}")
            runs = list(SweepRun.objects.order_by("index"))
            split_at = runs[0].sweep.split_ts
            differ = [(run.index, run.combination, {part: (getattr(run, part), expected[part]) for part in PARTS
                                                      if getattr(run, part) != expected[part]})
                      for run, report in zip(runs, reports)
                      if any(getattr(run, part) != (expected := figures(report, split_at=split_at))[part] for part in PARTS)]
            print(f"the sweep's figures equal the sequential replays': {not differ}; in-sample P&L "
                  f"{sorted({str(Decimal(r.in_sample['pnl']).quantize(Decimal('0.01'))) for r in runs})}")
            for index, combination, parts in differ:  # the same code gives the same figures: another change of the checkout?
                print(f"  run {index} {combination}: {parts}")
            if len(runs) != len(combinations) or any(run.status != SweepRun.DONE for run in runs):
                return 1
        finally:
            embedded.stop([redis], grace_s=5)
    ratio = base_s / sweep_s
    write_results("sweep", {
        "sweep_16_settings_2_workers_s": metric(sweep_s, "s wall", base_s, f">= {TARGET}x faster than sequential",
                                                ratio >= TARGET, ratio=ratio),
        "per_replay_s": metric(sweep_s / len(combinations), "s wall per setting", base_s / len(combinations),
                               "(reported)", True, ratio=ratio),
        "cores_used": metric(sweep_cpu / sweep_s, "CPU s per wall s (sweep; baseline: sequential)", base_cpu / base_s,
                             "(reported: what the shared machine gave each side)", True,
                             ratio=(sweep_cpu / sweep_s) / (base_cpu / base_s)),
        "load_average_1m": metric(load_after, "1-min load average at the end", load_before, "(reported: shared machine)",
                                  True, ratio=1.0),
    })
    return 0


if __name__ == "__main__":
    sys.exit(main())
