"""Faults, with the real processes: Redis stopped and restarted, a whole worker killed,
PostgreSQL dropping a connection mid-transaction, SQLite written by every process of
the embedded desk at once, venues that time out, fail, rate-limit or send garbage.

Every process test runs on a redis-server of its own (never the machine's shared one),
so stopping it touches nobody else and no other test run's worker takes our tasks.
The long variants carry the `reliability` marker (`make test-reliability`). Each test
prints its figures on a `FAULTS` line (docs/RELIABILITY.md records them).
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from decimal import Decimal as D

import psycopg
import pytest
import requests
from django.contrib.auth import get_user_model
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from rest_framework.authtoken.models import Token

from decisions.models import Controls, Decision
from execution.tasks import decide, decide_pending
from execution.models import Balance, Fill, Trade
from execution.tasks import execute
from scanners.models import ArbitrageSettings, Opportunity, ScanRun
from scanners.tasks import poll_feeds, scan_arbitrage
from tests.conftest import FIXTURES
from tests.integration import processes
from tests.factories import approved_desk_smoke, desk_smoke_arbitrage
from tests.integration.test_run_command import RunningDesk, base_env
from tests.venue_server import VenueServer
from tests.waiting import LogSince, broker_holds_none_of, poll, queued_task_ids, unacked_task_ids, wait_for
from trifecta_site import embedded
from trifecta_site.celery import app
from trifecta_site.models import Heartbeat

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def postgresql():
    if connection.vendor != "postgresql":
        pytest.skip("a production-layout fault (PostgreSQL and Redis): exercised in the PostgreSQL pass")


def figures(name: str, **values) -> None:
    print(f"\nFAULTS {name} {json.dumps(values, default=str)}")


class PrivateRedis:
    """A redis-server for one test: stopped and started again on the same port at will."""

    def __init__(self, directory):
        self.directory, self.port, self.process = directory, embedded.free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.process = embedded.start_redis(directory=self.directory, port=self.port, env=dict(os.environ))

    def stop(self):
        embedded.stop([self.process], grace_s=5)


@pytest.fixture
def redis_server(tmp_path):
    server = PrivateRedis(tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def send(task, *args, broker: str):
    """Queue a task on the test's own broker (this process's settings point at the shared one); its id."""
    with app.connection_for_write(broker) as conn:
        return task.apply_async(args, connection=conn).id


@pytest.fixture
def launched():
    """Processes started by a test, stopped at its end whatever happened."""
    started = []
    yield started
    processes.stop(*started)


def token_session(user) -> requests.Session:
    session = requests.Session()
    session.headers["Authorization"] = f"Token {Token.objects.create(user=user).key}"
    return session


def health(base_url: str) -> tuple[int, dict]:
    response = requests.get(base_url + "/api/health/", timeout=5)
    return response.status_code, response.json()


# 1. Redis stopped and restarted --------------------------------------------------------------

def keep_every_arbitrage():
    """desk-smoke's routes lose their fees: keep them, and let the governor auto-execute them
    when the desk does (bypassing the admin's validation), so every scan of the looping replay
    stores and decides something."""
    ArbitrageSettings.get_solo()
    ArbitrageSettings.objects.update(min_net_pct=D("-1"), max_risk_score=D("100"), auto_min_net_pct=D("-1"),
                                     auto_min_profit_usd=D("-1000"), auto_max_risk=D("100"))


def undecided(before):
    """Opportunities stored before `before` without their three verdicts."""
    return (Opportunity.objects.filter(detected_at__lt=before).annotate(n=Count("decisions"))
            .exclude(n=3).values_list("pk", flat=True))


def redis_outage(tmp_path, redis_server, launched, outage_s: float):
    keep_every_arbitrage()
    controls = Controls.get_solo()
    controls.auto_execute = True
    controls.save()
    env = processes.desk_env(REDIS_URL=redis_server.url)
    port = embedded.free_port()
    launched.append(processes.start_web(env, tmp_path / "web.log", port))
    launched.append(processes.start_worker(env, tmp_path / "worker.log"))
    launched.append(processes.start_beat(env, tmp_path / "beat.log", tmp_path))
    base = f"http://127.0.0.1:{port}"
    api = token_session(get_user_model().objects.create_user("watcher", password="pw-for-tests-1"))
    wait_for(lambda: health(base)[0] == 200, 90, "a healthy desk", tmp_path / "worker.log")
    wait_for(lambda: Decision.objects.filter(layer="governor").count() >= 3, 60, "the first decisions", tmp_path / "worker.log")

    opportunities_before = Opportunity.objects.count()
    stopped_at = timezone.now()
    redis_server.stop()
    answers = Counter()
    began = time.monotonic()
    while time.monotonic() - began < outage_s:
        status, body = health(base)
        answers[(status, body["checks"]["broker"]["status"])] += 1
        answers[(api.get(base + "/api/opportunities/", timeout=5).status_code, "opportunities")] += 1
        time.sleep(1)
    during = Opportunity.objects.filter(detected_at__gt=stopped_at).count()
    redis_server.start()
    restarted_at, up = timezone.now(), time.monotonic()

    wait_for(lambda: health(base)[1]["checks"]["broker"]["status"] == "ok", 10, "the broker reported up")
    broker_up_s = time.monotonic() - up
    wait_for(lambda: Heartbeat.latest(Heartbeat.BEAT) > restarted_at, 60, "beat's heartbeat", tmp_path / "beat.log")
    wait_for(lambda: Heartbeat.latest(Heartbeat.WORKER) > restarted_at, 90, "the worker's heartbeat", tmp_path / "worker.log")
    worker_up_s = time.monotonic() - up
    wait_for(lambda: ScanRun.objects.filter(started_at__gt=restarted_at).exists(), 60, "a scan after the restart",
             tmp_path / "worker.log")
    scans_resumed_s = time.monotonic() - up
    wait_for(lambda: Opportunity.objects.filter(detected_at__gt=restarted_at, decisions__layer="governor").exists(), 60,
             "an opportunity decided after the restart", tmp_path / "worker.log")
    decisions_resumed_s = time.monotonic() - up

    settled = timezone.now()
    try:
        wait_for(lambda: not undecided(settled).exists(), 60, "every stored opportunity decided")
    except AssertionError:
        pass
    lost = list(undecided(settled))
    twice = Decision.objects.values("opportunity", "layer").annotate(n=Count("id")).filter(n__gt=1).count()
    worker_log = (tmp_path / "worker.log").read_text()
    figures(
        f"redis_outage_{outage_s:g}s", outage_s=outage_s, opportunities_before=opportunities_before,
        stored_during=during, opportunities_after=Opportunity.objects.count(),
        decided=Opportunity.objects.filter(detected_at__lt=settled).count() - len(lost), lost=len(lost), decided_twice=twice,
        trades=Trade.objects.count(), health_answers=dict((f"{s}/{b}", n) for (s, b), n in answers.items()),
        broker_up_s=round(broker_up_s, 1), worker_heartbeat_s=round(worker_up_s, 1),
        scans_resumed_s=round(scans_resumed_s, 1), decisions_resumed_s=round(decisions_resumed_s, 1),
        worker_reconnects=worker_log.count("Connected to redis://"),
    )
    assert answers and set(answers) == {(503, "down"), (200, "opportunities")}, answers
    assert twice == 0
    assert lost == [], f"{len(lost)} stored opportunities never decided"
    assert Trade.objects.values("opportunity").annotate(n=Count("id")).filter(n__gt=1).count() == 0
    assert not Trade.objects.exclude(status=Trade.REJECTED).filter(fills__isnull=True).exists()
    assert "Connection to broker lost" in worker_log


def test_redis_stopped_and_restarted_desk_reconnects_and_loses_nothing(postgresql, tmp_path, redis_server, launched):
    redis_outage(tmp_path, redis_server, launched, outage_s=6)


@pytest.mark.reliability
def test_redis_stopped_30_s_and_restarted_desk_reconnects_and_loses_nothing(postgresql, tmp_path, redis_server, launched):
    redis_outage(tmp_path, redis_server, launched, outage_s=30)


def test_decisions_queued_in_a_redis_that_restarts_empty_are_taken_up_from_the_database(postgresql, tmp_path,
                                                                                       redis_server, launched):
    """A Redis without persistence (as the bundled one) forgets its queues when it restarts:
    the opportunities whose `decide` messages waited there are found by `decide_pending`."""
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    keep_every_arbitrage()
    every_2_s, _ = IntervalSchedule.objects.get_or_create(every=2, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(name="decide pending").update(interval=every_2_s, kwargs=json.dumps({"older_than_s": 3}))
    env = processes.desk_env(REDIS_URL=redis_server.url)
    launched.append(processes.start_worker(env, tmp_path / "scan.log", queues="scan"))
    launched.append(processes.start_beat(env, tmp_path / "beat.log", tmp_path))
    wait_for(lambda: Opportunity.objects.count() >= 2, 60, "opportunities waiting for a desk worker", tmp_path / "scan.log")
    redis_server.stop()
    redis_server.start()
    restarted_at, up = timezone.now(), time.monotonic()
    stranded = list(Opportunity.objects.filter(status=Opportunity.DETECTED).values_list("pk", flat=True))
    desk_log = tmp_path / "desk.log"
    launched.append(processes.start_worker(env, desk_log, queues="desk"))
    wait_for(lambda: not undecided(restarted_at).exists(), 60, "the stranded opportunities decided", desk_log)
    twice = Decision.objects.values("opportunity", "layer").annotate(n=Count("id")).filter(n__gt=1).count()
    figures("redis_restarted_empty", stranded=len(stranded), decided_after_s=round(time.monotonic() - up, 1),
            decided_twice=twice, sweeps=desk_log.read_text().count("decide_pending["))
    assert stranded and twice == 0


# 2. A whole worker killed -------------------------------------------------------------------

def frozen_holding_tasks(process, broker: str):
    """Stop the worker's whole process group (SIGSTOP) at a moment it holds tasks taken and not
    acknowledged; their ids, read from the broker while nothing of the worker moves."""
    os.killpg(process.pid, signal.SIGSTOP)
    held = unacked_task_ids(broker)
    if not held:  # between two tasks: let it run on a little
        os.killpg(process.pid, signal.SIGCONT)
    return held


def test_a_whole_worker_killed_mid_execution_is_redelivered_to_the_next(postgresql, tmp_path, redis_server, launched):
    """tests/integration/test_desk_pipeline.py kills the pool process (redelivered at once);
    here the whole worker dies with it, so nobody is left to reject the task: it waits in
    Redis's unacked set until the visibility timeout and a new worker restores it.

    What the killed worker held is read from Redis with the worker frozen, not guessed from its
    log: kombu's Redis transport records a task as unacknowledged only after BRPOP has popped
    it, so a task popped in the instant of the kill is in no queue and no unacked set (nothing
    can deliver it again), and the one before it may have logged "received" without its record
    reaching Redis. Such a task is taken up by the database sweep (`decide_pending`)."""
    # The first worker keeps kombu's default visibility timeout: with 3 s it restored (queued
    # again) tasks it still held on a busy machine, and a copy it popped in the instant of the
    # kill was lost while its log said the task was in flight. Only the second worker sweeps.
    first_env = processes.desk_env(REDIS_URL=redis_server.url)
    env = processes.desk_env(REDIS_URL=redis_server.url, CELERY_VISIBILITY_TIMEOUT_S=3, CELERY_RESTORE_INTERVAL_S=1)
    first_log, second_log = tmp_path / "worker-1.log", tmp_path / "worker-2.log"
    first = processes.start_worker(first_env, first_log, queues="desk")
    launched.append(first)
    ids = approved_desk_smoke(200)
    Opportunity.objects.filter(pk__in=ids).update(detected_at=timezone.now())  # when a scan stores them (wall clock)
    sent = {send(execute, pk, broker=redis_server.url) for pk in ids}
    wait_for(lambda: Trade.objects.count() >= 20, 60, "the first trades", first_log)
    held = wait_for(lambda: frozen_holding_tasks(first, redis_server.url), 30, "the worker holding a task", first_log)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(10)
    killed_at = time.monotonic()
    done_at_kill = Trade.objects.count()
    assert done_at_kill < len(ids), "the worker finished before it could be killed: raise the count"
    launched.append(processes.start_worker(env, second_log, queues="desk"))
    received = r"execution\.tasks\.execute\[([0-9a-f-]+)\] received"
    redelivered = wait_for(lambda: held <= set(re.findall(received, second_log.read_text())) and held, 60,
                           "every task the killed worker held delivered again", second_log)
    wait_for(lambda: broker_holds_none_of(redis_server.url, sent), 120, "the queue drained", second_log)
    settled = Trade.objects.count()
    # The database still says an opportunity whose message the broker lost is approved without a
    # trade; the sweep beat runs every 30 s (`decide_pending`) queues it again.
    send(decide_pending, 0, broker=redis_server.url)
    wait_for(lambda: Trade.objects.count() == len(ids), 60, "every trade after the sweep", second_log)
    recovered_s = time.monotonic() - killed_at
    # A late duplicate would come from a task still queued or taken: none is left.
    wait_for(lambda: not (queued_task_ids(redis_server.url) or unacked_task_ids(redis_server.url)), 60,
             "every task acknowledged (the executions and the sweep's decisions)", second_log)
    figures("worker_sigkill", executions=len(ids), trades_at_kill=done_at_kill, held_at_kill=len(held),
            redelivered=len(redelivered), lost_by_the_broker=len(ids) - settled, trades=Trade.objects.count(),
            fills=Fill.objects.count(), all_trades_after_s=round(recovered_s, 1))
    assert Trade.objects.count() == len(ids) and Fill.objects.count() == 2 * len(ids)
    assert all(b.total == b.free + b.reserved for b in Balance.objects.all())


# 3. PostgreSQL drops the worker's connection mid-transaction --------------------------------

@pytest.fixture
def row_locker(postgresql):
    """A second PostgreSQL session that holds a row lock, so a worker's transaction waits
    half-way (its earlier writes done, uncommitted) until the test terminates it."""
    db = connection.settings_dict
    conn = psycopg.connect(host=db.get("HOST") or "127.0.0.1", port=db.get("PORT") or 5432,
                           user=db.get("USER") or "postgres", password=db.get("PASSWORD") or None, dbname=db["NAME"])
    yield conn
    conn.close()


def blocked_backend(locker) -> int:
    """The backend of the worker's transaction waiting on our lock."""
    def find():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> %s "
                           "AND wait_event_type = 'Lock' AND state = 'active'", [locker.info.backend_pid])
            row = cursor.fetchone()
        return row and row[0]
    return wait_for(find, 60, "the worker's transaction waiting on the lock")


def terminate_mid_transaction(locker) -> list[str]:
    """Terminate the waiting worker's backend; the tables its open transaction had written to."""
    with connection.cursor() as cursor:
        pid = blocked_backend(locker)
        cursor.execute("SELECT DISTINCT c.relname FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                       "WHERE l.pid = %s AND l.mode = 'RowExclusiveLock' AND c.relkind = 'r'", [pid])
        written = sorted(row[0] for row in cursor.fetchall())
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    return written


def retries(log, task: str) -> list[str]:
    """The retries after a lost connection the worker logged ("Retry in 0.5s: OperationalError")."""
    found = re.findall(rf"Task {re.escape(task)}\[[0-9a-f-]+\] retry: (Retry in [0-9.]+s): (\w+)", log.read_text())
    return [f"{delay}: {error}" for delay, error in found if error in ("OperationalError", "InterfaceError")]


@pytest.fixture(scope="module")
def pg_desk_worker(django_db_setup, tmp_path_factory):
    """One desk worker on a Redis of its own for the module's connection-drop tests (a worker
    that got its connection back after one drop is as good a subject for the next)."""
    if connection.vendor != "postgresql":
        pytest.skip("a production-layout fault (PostgreSQL and Redis): exercised in the PostgreSQL pass")
    directory = tmp_path_factory.mktemp("pg-desk")
    server = PrivateRedis(directory / "redis")
    server.start()
    log = directory / "worker.log"
    worker = processes.start_worker(processes.desk_env(REDIS_URL=server.url), log, queues="desk")
    yield server, log
    processes.stop(worker)
    server.stop()


@pytest.fixture
def pg_worker(pg_desk_worker, transactional_db):
    """The module's worker for one test: configuration read again, its log from the test's start,
    and the test over once the worker has acknowledged everything it took."""
    server, log = pg_desk_worker
    processes.configuration_changed_everywhere()
    yield server, LogSince(log)
    processes.wait_for_idle_queues(server.url, queues=("desk",))


def test_execution_connection_dropped_mid_transaction_rolls_back_whole_and_retries(postgresql, pg_worker, row_locker):
    redis_server, log = pg_worker
    warm, pk = approved_desk_smoke(2)
    send(execute, warm, broker=redis_server.url)  # balances seeded, the worker connected
    wait_for(lambda: Trade.objects.filter(opportunity_id=warm).exists(), 60, "the first trade", log)
    balances = {(b.venue, b.currency): (b.free, b.total) for b in Balance.objects.all()}

    row_locker.execute("SELECT id FROM scanners_opportunity WHERE id = %s FOR UPDATE", [pk])
    send(execute, pk, broker=redis_server.url)
    written = terminate_mid_transaction(row_locker)  # balances moved, trade inserted, waiting to mark it executed
    dropped = time.monotonic()
    half = {
        "trades": Trade.objects.filter(opportunity_id=pk).count(),
        "fills": Fill.objects.filter(trade__opportunity_id=pk).count(),
        "balances_changed": sum(1 for b in Balance.objects.all() if balances.get((b.venue, b.currency)) != (b.free, b.total)),
    }
    row_locker.commit()
    wait_for(lambda: Trade.objects.filter(opportunity_id=pk).exists(), 60, "the retried execution", log)
    recovered_s = time.monotonic() - dropped
    trade = Trade.objects.get(opportunity_id=pk)
    seen = retries(log, "execution.tasks.execute")
    figures("pg_drop_execute", written_before_drop=written, after_drop=half, retries=seen, recovered_after_s=round(recovered_s, 1),
            trades=Trade.objects.filter(opportunity_id=pk).count(), fills=trade.fills.count())
    assert {"execution_balance", "execution_trade"} <= set(written), written
    assert half == {"trades": 0, "fills": 0, "balances_changed": 0}
    assert seen, "no retry after the dropped connection"
    assert trade.status == Trade.CLOSED and trade.fills.count() == 2
    assert Opportunity.objects.get(pk=pk).status == Opportunity.EXECUTED
    assert all(b.total == b.free + b.reserved for b in Balance.objects.all())


def test_decision_connection_dropped_mid_transaction_rolls_back_whole_and_retries(postgresql, pg_worker, row_locker):
    redis_server, log = pg_worker
    warm, target = desk_smoke_arbitrage("route-warm"), desk_smoke_arbitrage("route-target")
    send(decide, warm.pk, broker=redis_server.url)
    wait_for(lambda: Decision.objects.filter(opportunity=warm).count() == 3, 60, "the first decision", log)

    row_locker.execute("SELECT id FROM scanners_opportunity WHERE id = %s FOR UPDATE", [target.pk])
    send(decide, target.pk, broker=redis_server.url)
    written = terminate_mid_transaction(row_locker)  # waiting to mark it decided
    dropped = time.monotonic()
    half = Decision.objects.filter(opportunity=target).count()
    row_locker.commit()
    wait_for(lambda: Decision.objects.filter(opportunity=target).count() == 3, 60, "the retried decision", log)
    recovered_s = time.monotonic() - dropped
    seen = retries(log, "execution.tasks.decide")
    figures("pg_drop_decide", written_before_drop=written, decisions_after_drop=half, retries=seen, recovered_after_s=round(recovered_s, 1))
    assert "decisions_decision" in written, written
    assert half == 0
    assert seen, "no retry after the dropped connection"
    assert Opportunity.objects.get(pk=target.pk).status != Opportunity.DETECTED


# 4. SQLite: web, worker and beat writing at once ---------------------------------------------

KEEP_EVERY_ARBITRAGE = "from tests.reliability.test_faults import keep_every_arbitrage; keep_every_arbitrage()"


def sqlite_load(tmp_path, load_s: float):
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default (SQLite) is exercised in the SQLite pass")
    env = base_env(tmp_path)
    env.update(CELERY_CONCURRENCY="2", AUTO_EXECUTE="true", DJANGO_SUPERUSER_PASSWORD="pw-for-tests-1",
               API_USER_RATE="100000/min", API_ANON_RATE="100000/min")
    for command in (["migrate", "-v0"], ["shell", "-c", KEEP_EVERY_ARBITRAGE]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=processes.ROOT, env=env, check=True, timeout=120)
    port = embedded.free_port()
    desk = RunningDesk(env, port)
    try:
        desk.wait_for(r"Press Ctrl-C", 120)
        desk.wait_healthy(120)
        created = subprocess.run([sys.executable, "manage.py", "drf_create_token", "admin"], cwd=processes.ROOT, env=env,
                                 capture_output=True, text=True, timeout=60)
        token = re.search(r"Generated token (\w+)", created.stdout).group(1)
        results, stop = Counter(), time.monotonic() + load_s

        def writer(n: int):
            session = requests.Session()
            session.headers["Authorization"] = f"Token {token}"
            base, k = f"http://127.0.0.1:{port}/api/", 0
            while time.monotonic() < stop:
                k += 1
                calls = [
                    ("PATCH", "limits/", {"max_trades_per_day": 1000 + (k + n) % 7}),
                    ("PATCH", "thresholds/forex/", {"top_n": 2 + (k % 2)}),
                    ("GET", "opportunities/", None), ("GET", "trades/", None), ("GET", "decisions/", None),
                    ("GET", "health/", None),
                ]
                for method, path, body in calls:
                    response = session.request(method, base + path, json=body, timeout=60)
                    results[(method, response.status_code)] += 1

        threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        database = tmp_path / "var" / "trifecta.sqlite3"
        import sqlite3

        with sqlite3.connect(database) as db:
            counts = {table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                      for table in ("scanners_scanrun", "scanners_opportunity", "decisions_decision", "execution_trade",
                                    "trifecta_site_configchange")}
            journal = db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        desk.process.send_signal(signal.SIGINT)
        desk.process.wait(timeout=60)
    locked = [line for line in desk.output.splitlines() if "locked" in line.lower()]
    figures(f"sqlite_load_{load_s:g}s", requests={f"{m} {s}": n for (m, s), n in results.items()}, rows=counts,
            journal_mode=journal, locked_lines=len(locked))
    assert journal == "wal"
    assert set(status for _, status in results) == {200}, results
    assert counts["scanners_scanrun"] and counts["decisions_decision"] and counts["trifecta_site_configchange"]
    assert locked == [], locked[:5]


def test_sqlite_embedded_desk_under_concurrent_writes_never_reports_locked(tmp_path):
    sqlite_load(tmp_path, load_s=15)


@pytest.mark.reliability
def test_sqlite_embedded_desk_under_two_minutes_of_writes_never_reports_locked(tmp_path):
    sqlite_load(tmp_path, load_s=120)


# 5. Venues that fail ---------------------------------------------------------------------------

VENUE_START = 1_700_000_000_000


def test_a_failing_venue_is_degraded_in_the_api_the_other_scans_on_and_it_recovers(tmp_path, redis_server, launched):
    """The feed's own reaction is unit-tested in tests/scanners/test_ccxt_feed.py; here a real
    scan worker polls the venue server over HTTP (every fault in turn, each cleared again) and
    a real web process shows what it stored."""
    server = VenueServer(FIXTURES / "recordings" / "two-venues", clock=VENUE_START + 20_000, timeout_s=10).start()
    seen = {}
    try:
        urls = ",".join(f"{venue}={url}" for venue, url in server.urls().items())
        env = processes.desk_env(REDIS_URL=redis_server.url, TRIFECTA_FEED="ccxt", CCXT_URLS=urls, CCXT_TIMEOUT_MS=1500,
                                 TRIFECTA_VENUES="binance,kraken", TRIFECTA_SYMBOLS="BTC/USDT,ETH/USDT")
        port = embedded.free_port()
        log = tmp_path / "worker.log"
        launched.append(processes.start_web(env, tmp_path / "web.log", port))
        launched.append(processes.start_worker(env, log, queues="scan"))
        api = token_session(get_user_model().objects.create_user("watcher", password="pw-for-tests-1"))

        def feeds():
            rows = api.get(f"http://127.0.0.1:{port}/api/feeds/", timeout=10).json()["results"]
            return {row["venue"]: row for row in rows if row["feed"] == "ccxt"}

        def poll_until(condition, what):
            """Poll as beat would (poll_feeds), until /api/feeds/ shows `condition`."""
            def attempt():
                send(poll_feeds, broker=redis_server.url)
                return poll(lambda: (lambda f: condition(f) and f)(feeds()), 4)
            return wait_for(attempt, 60, what, log)

        poll_until(lambda f: len(f) == 2 and {v["state"] for v in f.values()} == {"ok"}, "both venues ok")
        for fault in ("timeout", "5xx", "ratelimit", "garbage"):
            server.fault("kraken", fault)
            faulted = time.monotonic()
            degraded = poll_until(lambda f: f["kraken"]["state"] in ("degraded", "down") and f["binance"]["state"] == "ok",
                                  f"kraken degraded by {fault}")
            marked_s = time.monotonic() - faulted
            scans_before = ScanRun.objects.count()
            send(scan_arbitrage, broker=redis_server.url)
            scan = wait_for(lambda: ScanRun.objects.count() > scans_before and ScanRun.objects.latest("pk"), 60,
                            f"a scan while kraken fails ({fault})", log)
            server.clear()
            cleared = time.monotonic()
            poll_until(lambda f: f["kraken"]["state"] == "ok" and f["binance"]["state"] == "ok", f"kraken recovered from {fault}")
            seen[fault] = {
                "state": degraded["kraken"]["state"], "reason": degraded["kraken"]["last_error"],
                "error_at": degraded["kraken"]["error_at"], "marked_after_s": round(marked_s, 1),
                "scan_feed_status": scan.feed_status, "scan_error": scan.error,
                "recovered_after_s": round(time.monotonic() - cleared, 1),
                "health_feeds": requests.get(f"http://127.0.0.1:{port}/api/health/", timeout=10).json()["checks"]["feeds"]["status"],
            }
    finally:
        server.stop()
    figures("venue_faults", **{fault: {k: (v[:90] if k == "reason" else v) for k, v in found.items() if k != "error_at"}
                               for fault, found in seen.items()})
    for fault, found in seen.items():
        assert found["reason"] and found["error_at"], fault
        assert found["scan_feed_status"]["binance"] == "ok" and not found["scan_error"], (fault, found)
        assert found["scan_feed_status"]["kraken"] in ("degraded", "down"), (fault, found)
        assert found["health_feeds"] == "ok", (fault, found)
    assert "RequestTimeout" in seen["timeout"]["reason"] and "ExchangeNotAvailable" in seen["5xx"]["reason"]

