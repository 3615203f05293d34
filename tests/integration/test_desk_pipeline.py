"""The pipeline across real processes: a Celery worker decides and executes what this process queues.

- a limit changed through admin here applies to the worker's very next decision;
- the worker process running executions killed with SIGKILL mid-run: the task in flight
  is redelivered (`acks_late`) and every opportunity has exactly one trade.
"""
import os
import re
import signal
from decimal import Decimal as D

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.forms.models import model_to_dict

from decisions.models import Controls, Decision, RiskLimits
from execution.models import Balance, Fill, Trade
from execution.tasks import decide, execute
from scanners.models import ArbitrageSettings
from tests.factories import approved_desk_smoke, desk_smoke_arbitrage
from tests.waiting import LogSince, broker_holds_none_of, wait_for
from trifecta_site.models import ConfigChange, Heartbeat
from trifecta_site.tasks import probe

from . import processes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="module")
def desk_worker(django_db_setup, tmp_path_factory):
    """One desk worker for the module's tests (redelivery after 3 s, swept every second)."""
    log = tmp_path_factory.mktemp("desk-worker") / "worker.log"
    env = processes.desk_env(CELERY_VISIBILITY_TIMEOUT_S=3, CELERY_RESTORE_INTERVAL_S=1)
    process = processes.start_worker(env, log, queues="desk")
    yield process, log
    processes.stop(process)


@pytest.fixture
def worker(desk_worker, transactional_db):
    """The module's worker as a test's own: configuration read again, the log from this test's
    start, and the test over only once none of its tasks is left to run into the next one."""
    process, log = desk_worker
    processes.configuration_changed_everywhere()
    yield process, LogSince(log)
    processes.wait_for_idle_queues(settings.CELERY_BROKER_URL, queues=("desk",))


def test_a_limit_changed_in_admin_applies_to_the_next_decision_in_the_worker(worker, client):
    _, log = worker
    controls = Controls.get_solo()
    controls.auto_execute = True
    controls.save()
    ArbitrageSettings.objects.update_or_create(pk=1, defaults={"auto_min_profit_usd": D("0"), "auto_max_risk": D("100")})
    first = desk_smoke_arbitrage("route-1")
    decide.delay(first.pk)
    governor = wait_for(lambda: Decision.objects.filter(opportunity=first, layer="governor").first(), 60, "a decision", log)
    assert governor.verdict == "execute", governor.reasons
    wait_for(lambda: Trade.objects.filter(opportunity=first).exists(), 30, "the trade", log)

    admin = get_user_model().objects.create_superuser("operator", password="pw-for-tests-1")
    client.force_login(admin)
    form = {k: v for k, v in model_to_dict(RiskLimits.get_solo()).items() if v is not None and k != "id"}
    response = client.post("/admin/decisions/risklimits/1/change/", {**form, "max_trades_per_day": 1})
    assert response.status_code == 302, response.content[:2000]
    assert ConfigChange.objects.filter(field="max_trades_per_day", new_value="1", changed_by=admin).exists()

    second = desk_smoke_arbitrage("route-2")
    decide.delay(second.pk)
    risk = wait_for(lambda: Decision.objects.filter(opportunity=second, layer="risk").first(), 30, "the next decision", log)
    assert risk.verdict == "blocked" and risk.reasons == ["TRADE_COUNT"]
    assert not Trade.objects.filter(opportunity=second).exists()


def pool_child(process) -> int:
    """The prefork child that runs the tasks of a `--concurrency 1` worker."""
    path = f"/proc/{process.pid}/task/{process.pid}/children"
    children = wait_for(lambda: open(path).read().split(), 30, "the worker's pool process")
    return int(children[0])


def test_a_worker_process_killed_mid_execution_leaves_each_trade_exactly_once(worker):
    """SIGKILL the process running the executions (as the OOM killer would) while they run:
    the task it was running is redelivered (`acks_late`, rejected on a lost worker) and
    every opportunity ends with exactly one trade."""
    process, log = worker
    ids = approved_desk_smoke(200)
    sent = {execute.delay(pk).id for pk in ids}
    wait_for(lambda: Trade.objects.count() >= 20, 60, "the first trades", log)
    os.kill(pool_child(process), signal.SIGKILL)
    done_at_kill = Trade.objects.count()
    assert done_at_kill < len(ids), "the worker finished before it could be killed: raise the count"
    wait_for(lambda: Trade.objects.count() == len(ids), 120, "every trade after the kill", log)
    wait_for(lambda: "WorkerLostError" in log.read_text() or "exited with 'signal 9" in log.read_text(), 10,
             "the worker noticing its lost process", log)
    received = re.findall(r"execution\.tasks\.execute\[([0-9a-f-]+)\] received", log.read_text())
    redelivered = {task for task in received if received.count(task) > 1}
    assert redelivered, "the task the killed process was running was not delivered again"
    # A late duplicate would come from a task still queued or taken and unacknowledged: none is.
    wait_for(lambda: broker_holds_none_of(settings.CELERY_BROKER_URL, sent), 60, "every execution acknowledged", log)
    assert Trade.objects.count() == len(ids) and Fill.objects.count() == 2 * len(ids)
    assert Trade.objects.filter(status=Trade.CLOSED).count() == len(ids)
    assert all(b.total == b.free + b.reserved for b in Balance.objects.all())


def test_a_solo_worker_above_its_memory_limit_stops_after_its_task(tmp_path):
    """README's desk workers run the solo pool, where Celery's per-child memory limit does not
    apply: ours finishes and acknowledges the task, then stops (exit 0) for its supervisor
    to start a fresh one. (A queue of its own: the module's desk worker takes nothing of it.)"""
    log = tmp_path / "solo.log"
    queue = f"solo-{os.getpid()}"
    process = processes.start_worker(processes.desk_env(CELERY_MAX_MEMORY_PER_CHILD_KB=1), log, queues=queue, pool="solo")
    try:
        sent = probe.apply_async(("solo-over-memory",), queue=queue)
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        processes.stop(process)
    assert Heartbeat.objects.filter(process=Heartbeat.PROBE, hostname="solo-over-memory").count() == 1
    assert "above CELERY_MAX_MEMORY_PER_CHILD_KB=1: stopping after this task" in log.read_text()
    unacknowledged = redis.Redis.from_url(settings.REDIS_URL).hvals("unacked")
    assert not any(sent.id.encode() in message for message in unacknowledged)
