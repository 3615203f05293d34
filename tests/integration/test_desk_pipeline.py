"""The pipeline across real processes: a Celery worker decides and executes what this process queues.

- a limit changed through admin here applies to the worker's very next decision;
- the worker process running executions killed with SIGKILL mid-run: the task in flight
  is redelivered (`acks_late`) and every opportunity has exactly one trade.
"""
import os
import re
import signal
import time
from decimal import Decimal as D

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.forms.models import model_to_dict

from decisions.models import Controls, Decision, RiskLimits
from decisions.tasks import decide
from execution.models import Balance, Fill, Trade
from trifecta_site.clock import ms_to_datetime
from execution.tasks import execute
from scanners.models import ArbitrageSettings, Opportunity
from trifecta_site.models import ConfigChange, Heartbeat
from trifecta_site.tasks import probe

from . import processes

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]
T0 = 1_700_000_000_000  # desk-smoke's start
FIGURES = {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "binance", "sell_venue": "kraken",
           "buy_price": "37000.20", "sell_price": "37010.0", "size": "0.001", "net_pct": "0.6",
           "expected_profit": "60", "expected_profit_usd": "60"}


def opportunity(route: str) -> Opportunity:
    now = ms_to_datetime(T0)
    return Opportunity.objects.create(kind="arbitrage", type="cross_venue", symbol="BTC/USDT", venues=["binance", "kraken"],
                                      route=route, risk_score=D("10"), net_pct=D("0.6"), figures=FIGURES, rank=1,
                                      observed_at=now, market_ts=T0, detected_at=now)


def wait_for(condition, timeout_s: float, what: str, log=None):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)
    tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
    raise AssertionError(f"timed out waiting for {what}\n{tail}")


@pytest.fixture
def worker(tmp_path):
    log = tmp_path / "worker.log"
    process = processes.start_worker(processes.desk_env(CELERY_VISIBILITY_TIMEOUT_S=3, CELERY_RESTORE_INTERVAL_S=1), log, queues="desk")
    yield process, log
    processes.stop(process)


def test_a_limit_changed_in_admin_applies_to_the_next_decision_in_the_worker(worker, client):
    _, log = worker
    controls = Controls.get_solo()
    controls.auto_execute = True
    controls.save()
    ArbitrageSettings.objects.update_or_create(pk=1, defaults={"auto_min_profit_usd": D("0"), "auto_max_risk": D("100")})
    first = opportunity("route-1")
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

    second = opportunity("route-2")
    decide.delay(second.pk)
    risk = wait_for(lambda: Decision.objects.filter(opportunity=second, layer="risk").first(), 30, "the next decision", log)
    assert risk.verdict == "blocked" and risk.reasons == ["TRADE_COUNT"]
    assert not Trade.objects.filter(opportunity=second).exists()


def approved(count: int) -> list[int]:
    ids = []
    for n in range(count):
        opp = opportunity(f"route-{n}")
        common = {"opportunity": opp, "decided_at": opp.detected_at, "market_ts": T0}
        Decision.objects.bulk_create([
            Decision(layer="agent", verdict="approve", size_usd=D("37"), **common),
            Decision(layer="risk", verdict="approved", level="LOW", size_usd=D("37"), **common),
            Decision(layer="governor", verdict="execute", size_usd=D("37"), **common),
        ])
        ids.append(opp.pk)
    return ids


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
    ids = approved(200)
    for pk in ids:
        execute.delay(pk)
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
    time.sleep(2)  # a late duplicate would land now
    assert Trade.objects.count() == len(ids) and Fill.objects.count() == 2 * len(ids)
    assert Trade.objects.filter(status=Trade.CLOSED).count() == len(ids)
    assert all(b.total == b.free + b.reserved for b in Balance.objects.all())


def test_a_solo_worker_above_its_memory_limit_stops_after_its_task(tmp_path):
    """README's desk workers run the solo pool, where Celery's per-child memory limit does not
    apply: ours finishes and acknowledges the task, then stops (exit 0) for its supervisor
    to start a fresh one."""
    log = tmp_path / "solo.log"
    process = processes.start_worker(processes.desk_env(CELERY_MAX_MEMORY_PER_CHILD_KB=1), log, queues="desk", pool="solo")
    try:
        sent = probe.delay("solo-over-memory")
        assert process.wait(60) == 0, log.read_text()[-3000:]
    finally:
        processes.stop(process)
    assert Heartbeat.objects.filter(process=Heartbeat.PROBE, hostname="solo-over-memory").count() == 1
    assert "above CELERY_MAX_MEMORY_PER_CHILD_KB=1: stopping after this task" in log.read_text()
    unacknowledged = redis.Redis.from_url(settings.REDIS_URL).hvals("unacked")
    assert not any(sent.id.encode() in message for message in unacknowledged)
