"""A sweep shared by two real Celery workers on the `replay` queue, one killed mid-sweep.

The workers, the sweep command and the replays are real processes on the test database and a
redis-server of the test's own (no other test run's worker takes its tasks). The replay the
killed worker held stays in Redis's unacknowledged set and is delivered again once the
visibility timeout passes (the desk's `acks_late` setting): its run is replayed anew, the report
is complete, and a second sweep of the same grid writes the same bytes.
"""
import json
import os
import signal
import sys

import pytest

from sweeps.models import Sweep, SweepRun
from tests.integration import processes
from tests.waiting import unacked_task_ids, wait_for
from trifecta_site import embedded
from trifecta_site.demo import DEMO_RECORDING

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

# Ten minutes of the demo's tick quotes (two binary trades, the first forex signals): short
# replays, whose results differ by the grid's settings.
WINDOW = ("1399001900000", "1399002600000")
GRID = {"thresholds": {"binary": {"auto_min_probability": ["0.75", "0.8"]}}, "limits": {"max_trades_per_day": [50, 1]}}
# Longer than one of these replays on a loaded machine (a live worker's task is not restored
# under it), short enough that the killed worker's replay comes back soon.
VISIBILITY_S = 25


@pytest.fixture
def broker(tmp_path):
    port = embedded.free_port()
    server = embedded.start_redis(directory=tmp_path / "redis", port=port, env=dict(os.environ))
    yield f"redis://127.0.0.1:{port}/0"
    embedded.stop([server], grace_s=5)


@pytest.fixture
def launched():
    started = []
    yield started
    processes.stop(*started)


def start_replay_worker(env, log, name):
    args = [sys.executable, "-m", "celery", "-A", "trifecta_site", "worker", "-Q", "replay", "--pool", "prefork",
            "--concurrency", "1", "--without-gossip", "--without-mingle", "-n", f"{name}@%h", "--loglevel", "INFO"]
    return processes.spawn(args, env, log, name)


def start_sweep(env, tmp_path, name):
    grid = tmp_path / "grid.json"
    grid.write_text(json.dumps(GRID))
    args = [sys.executable, "manage.py", "sweep", "--recording", str(DEMO_RECORDING), "--from", WINDOW[0], "--to",
            WINDOW[1], "--grid", str(grid), "--report", str(tmp_path / name)]
    return processes.spawn(args, env, tmp_path / f"{name}.log", "sweep")


def held_by(worker_name: str, broker: str):
    """The run `worker_name` is replaying, once Redis holds its message as delivered and unacknowledged."""
    for run in SweepRun.objects.filter(status=SweepRun.RUNNING, worker__startswith=f"{worker_name}@"):
        if run.task_id and run.task_id in unacked_task_ids(broker):
            return run
    return None


def test_two_workers_share_a_sweep_and_a_killed_worker_s_replay_runs_again(tmp_path, broker, launched):
    env = processes.desk_env(REDIS_URL=broker, CELERY_VISIBILITY_TIMEOUT_S=VISIBILITY_S, CELERY_RESTORE_INTERVAL_S=1,
                             TRIFECTA_VAR_DIR=tmp_path / "var")
    first = start_replay_worker(env, tmp_path / "first.log", "first")
    second = start_replay_worker(env, tmp_path / "second.log", "second")
    launched += [first, second]
    sweep_process = start_sweep(env, tmp_path, "killed")
    launched.append(sweep_process)

    killed = wait_for(lambda: held_by("first", broker), 120, "the first worker replaying a run", tmp_path / "first.log")
    os.killpg(first.pid, signal.SIGKILL)  # the whole worker: main process, pool process and its replay
    first.wait(10)
    wait_for(lambda: sweep_process.poll() is not None, 300, "the sweep to finish", tmp_path / "killed.log")
    output = (tmp_path / "killed.log").read_text()
    assert sweep_process.returncode == 0, output

    sweep = Sweep.objects.get()
    runs = list(sweep.runs.order_by("index"))
    assert sweep.status == Sweep.COMPLETE and [run.status for run in runs] == [SweepRun.DONE] * 4
    again = SweepRun.objects.get(pk=killed.pk)
    assert again.attempts >= 2 and again.worker.startswith("second@"), (again.attempts, again.worker)
    assert killed.task_id in (tmp_path / "second.log").read_text()  # the same message, delivered again
    assert output.count("] limits.max_trades_per_day=") == 4  # one progress line per finished replay
    report = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert report["complete"] and report["runs"]["done"] == 4 and len(report["ranking"]) == 4
    assert {json.dumps(row["combination"], sort_keys=True) for row in report["ranking"]} == {
        json.dumps(run.combination, sort_keys=True) for run in runs}
    in_sample = [row["in_sample"]["pnl"] for row in report["ranking"]]
    assert len(set(in_sample)) > 1, "the grid's settings should change the result on this window"

    # The same sweep again, on two live workers: the same report, byte for byte.
    launched.append(start_replay_worker(env, tmp_path / "third.log", "third"))
    wait_for(lambda: " ready." in (tmp_path / "third.log").read_text(), 60, "the third worker", tmp_path / "third.log")
    repeat = start_sweep(env, tmp_path, "repeat")
    launched.append(repeat)
    wait_for(lambda: repeat.poll() is not None, 300, "the second sweep to finish", tmp_path / "repeat.log")
    assert repeat.returncode == 0, (tmp_path / "repeat.log").read_text()
    assert (tmp_path / "repeat" / "report.json").read_bytes() == (tmp_path / "killed" / "report.json").read_bytes()
    shared = Sweep.objects.exclude(pk=sweep.pk).get().runs.values_list("worker", flat=True)
    assert {worker.split("@")[0] for worker in shared} == {"second", "third"}, list(shared)


def test_ctrl_c_cancels_the_replays_not_started_and_writes_the_report_of_those_finished(tmp_path, broker, launched):
    env = processes.desk_env(REDIS_URL=broker, TRIFECTA_VAR_DIR=tmp_path / "var")
    worker = start_replay_worker(env, tmp_path / "worker.log", "only")
    launched.append(worker)
    sweep_process = start_sweep(env, tmp_path, "interrupted")
    launched.append(sweep_process)
    wait_for(lambda: SweepRun.objects.filter(status=SweepRun.DONE).exists(), 180, "a first replay finished",
             tmp_path / "worker.log")
    sweep_process.send_signal(signal.SIGINT)
    wait_for(lambda: sweep_process.poll() is not None, 60, "the sweep to stop", tmp_path / "interrupted.log")
    output = (tmp_path / "interrupted.log").read_text()
    assert sweep_process.returncode == 0, output
    assert "interrupted:" in output
    report = json.loads((tmp_path / "interrupted" / "report.json").read_text())
    cancelled = SweepRun.objects.filter(status=SweepRun.CANCELLED)
    assert not report["complete"] and Sweep.objects.get().status == Sweep.CANCELLED
    assert report["runs"]["done"] == len(report["ranking"]) >= 1 and report["runs"]["cancelled"] == cancelled.count() >= 1
    # The replay running at Ctrl-C finishes; no cancelled one is ever started.
    wait_for(lambda: not SweepRun.objects.filter(status__in=[SweepRun.RUNNING, SweepRun.QUEUED]).exists(), 180,
             "the running replay to finish", tmp_path / "worker.log")
    wait_for(lambda: not unacked_task_ids(broker), 60, "every message acknowledged or discarded", tmp_path / "worker.log")
    assert set(cancelled.values_list("attempts", flat=True)) == {0}
