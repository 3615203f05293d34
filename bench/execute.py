"""End-to-end latency from an opportunity's creation to its executed trade row, with real workers on Redis and PostgreSQL.

An opportunity is stored as a scanner stores it and its `decide` task queued; a desk
worker runs the three layers (agent, risk manager, governor, with auto-execute on), hands
the approved opportunity to execution, and a worker fills and books it. Measured from the
moment the opportunity is created (sustained: just before its row is inserted; burst:
the instant all 1,000 `decide` tasks are in the desk queue) to the commit of its trade
row: p50/p99 at a sustained 200 opportunities/s, and the drain time and
p99 of a burst of 1,000. Baseline, measured in the same run on the same workers: the bare
Celery round trip, enqueue → the `probe` task's committed row. The desk workers run as
README's production layout runs them: one solo-pool worker process per core.

A row's commit time is when PostgreSQL delivers the NOTIFY that a trigger on the table
raises (a notification is delivered only once its transaction commits), as a listener
process of the benchmark's own hears it. `Trade.booked_at` and `Heartbeat.seen_at` are
set in Python before the insert, the locks and the commit: reading them as the end
would flatter both figures by the time the database takes.

The fill model runs with the `optimistic` preset here: the realistic preset waits out
its simulated 250 ms latency, which is market time, not desk overhead. Each opportunity
has a route of its own (the agent learns per route, and the recording's spread does not
cover the fees: a route that lost once is skipped, as it should be), and the daily trade
count, loss and loss-streak limits are opened up so that the run's 2,000 trades are
not stopped by them; every check still runs.

Targets (issue 26): p99 <= 50 ms at 200/s; the burst drained in <= 5 s. The ratio to the
bare round trip. Results: bench/results/execute.json.
"""
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal as D

from common import ROOT, metric, postgres_ready, write_results

URL = os.environ.get("BENCH_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/trifecta_bench")
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
RATE, SUSTAINED, BURST = 200, 1000, 1000
DESK_WORKERS = 2  # one per core
HOLD = "desk-burst"  # a queue no worker reads: a burst waits there until it is queued at once
RECORDING = ROOT / "tests" / "fixtures" / "recordings" / "desk-smoke"
T0 = 1_700_000_000_000
FIGURES = {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "binance", "sell_venue": "kraken",
           "buy_price": "37000.20", "sell_price": "37010.0", "size": "0.0001", "net_pct": "0.6",
           "expected_profit": "100", "expected_profit_usd": "100"}


def setup() -> None:
    os.environ.update(DATABASE_URL=URL, REDIS_URL=REDIS, LOG_LEVEL="ERROR")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from decisions.models import AgentState, Controls, Decision, RiskDay, RiskLimits, RiskState
    from execution.models import Balance, ExecutionSettings, Fill, Portfolio, Trade
    from scanners.models import Opportunity

    Fill.objects.all().delete()
    Trade.objects.all().delete()
    Decision.objects.all().delete()
    Opportunity.objects.all().delete()
    Balance.objects.all().delete()
    Portfolio.objects.all().delete()
    AgentState.objects.all().delete()
    RiskDay.objects.all().delete()
    RiskState.objects.all().delete()
    Controls.objects.update_or_create(pk=1, defaults={"auto_execute": True, "kill_switch": False, "arbitrage_enabled": True})
    RiskLimits.objects.update_or_create(pk=1, defaults={"max_trades_per_day": 10_000_000, "max_daily_loss": D("1000000"), "min_trade_usd": D("0"),
                                                        "max_consecutive_losses": 1_000_000})
    ExecutionSettings.objects.update_or_create(pk=1, defaults={"realism": "optimistic", "inventory_usd": D("1000000"),
                                                               "max_quote_age_ms": 10**9})


def opportunity(n: int):
    from django.utils import timezone

    from scanners.models import Opportunity

    now = timezone.now()
    return Opportunity(kind="arbitrage", type="cross_venue", symbol="BTC/USDT", venues=["binance", "kraken"],
                       route=f"xv:BTC/USDT:binance>kraken:{n}", risk_score=D("10"), net_pct=D(FIGURES["net_pct"]),
                       expected_profit=D(FIGURES["expected_profit"]), expected_profit_usd=D(FIGURES["expected_profit_usd"]),
                       figures=FIGURES, rank=1, observed_at=now, market_ts=T0, detected_at=now)


def created(count: int) -> list[int]:
    """Opportunities as a scanner stores them, not yet decided."""
    from scanners.models import Opportunity

    return [o.pk for o in Opportunity.objects.bulk_create(opportunity(next(_routes)) for _ in range(count))]


def create_and_decide() -> int:
    """One opportunity stored and its decision queued, as a scanner does (after its commit)."""
    from execution.tasks import decide

    row = opportunity(next(_routes))
    row.save()
    decide.delay(row.pk)
    return row.pk


_routes = itertools.count()  # each opportunity on a route of its own


def send(items, task, rate: float | None) -> dict:
    """Queue each item at `rate` per second, or all at once; returns item -> wall time queued.

    All at once: the messages are queued first on a queue no worker reads (sending 1,000
    takes this process about a second), then that list becomes the desk queue in one Redis
    RENAME: every message is there at the same instant, which is when each was queued.
    """
    if rate is None:
        import redis

        client = redis.Redis.from_url(REDIS)
        client.delete(HOLD)
        for item in items:
            task.apply_async((item,), queue=HOLD)
        if client.exists("desk"):
            raise RuntimeError("the desk queue should be empty before a burst")
        at = time.time()
        client.rename(HOLD, "desk")
        return dict.fromkeys(items, at)
    sent, began = {}, time.time()
    for n, item in enumerate(items):
        delay = began + n / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        sent[item] = time.time()
        task.delay(item)
    return sent


NOTIFY_TRIGGERS = """
CREATE OR REPLACE FUNCTION bench_trade_committed() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('bench_committed', NEW.opportunity_id::text); RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE OR REPLACE FUNCTION bench_probe_committed() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('bench_committed', NEW.hostname); RETURN NULL; END $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS bench_committed ON execution_trade;
CREATE TRIGGER bench_committed AFTER INSERT ON execution_trade FOR EACH ROW EXECUTE FUNCTION bench_trade_committed();
DROP TRIGGER IF EXISTS bench_committed ON trifecta_site_heartbeat;
CREATE TRIGGER bench_committed AFTER INSERT OR UPDATE ON trifecta_site_heartbeat
    FOR EACH ROW EXECUTE FUNCTION bench_probe_committed();
"""


def notify_commits() -> None:
    """Triggers in the benchmark's own database: each trade row and probe row announces its commit."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(NOTIFY_TRIGGERS)


def listen(path: str) -> None:
    """The listener process: one line `key wall-time` per committed row, as PostgreSQL delivers it."""
    import psycopg

    with psycopg.connect(URL, autocommit=True) as conn, open(path, "a") as out:
        conn.execute("LISTEN bench_committed")
        out.write("listening 0\n")
        out.flush()
        for note in conn.notifies():
            out.write(f"{note.payload} {time.time()}\n")
            out.flush()


class Commits:
    """Commit times of trade and probe rows, heard by a listener process (this one is busy sending);
    a context manager: the listener runs inside the `with` block, from its LISTEN on."""

    def __enter__(self):
        self.file = tempfile.NamedTemporaryFile("r", prefix="bench-commits-", suffix=".log")
        self.process = subprocess.Popen([sys.executable, __file__, "--listen", self.file.name], start_new_session=True)
        self.seen, self.buffer = {}, ""
        try:
            self.wait(["listening"], 30)
        except BaseException:
            self.__exit__()
            raise
        return self

    def wait(self, keys, timeout_s: float = 120) -> dict:
        """key -> commit time for each of `keys`, once all are heard; polled, so the wait takes little CPU from the workers."""
        wanted = {str(k): k for k in keys}
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.buffer += self.file.read()
            *lines, self.buffer = self.buffer.split("\n")
            for line in lines:
                key, at = line.split(" ")
                self.seen[key] = float(at)
            if all(k in self.seen for k in wanted):
                return {key: self.seen[k] for k, key in wanted.items()}
            if self.process.poll() is not None:
                raise RuntimeError(f"the commit listener exited with {self.process.returncode}")
            time.sleep(0.05)
        missing = [key for k, key in wanted.items() if k not in self.seen]
        raise RuntimeError(f"{len(missing)} of {len(wanted)} rows not committed after {timeout_s} s: {missing[:10]}")

    def __exit__(self, *_exc) -> None:
        os.killpg(self.process.pid, 15)
        self.process.wait(30)
        self.file.close()


def warm_up_verdicts(ids) -> dict:
    """What became of each opportunity (why a run stopped at its warm-up)."""
    from decisions.models import Decision
    from scanners.models import Opportunity

    found = {pk: [status] for pk, status in Opportunity.objects.filter(pk__in=ids).values_list("pk", "status")}
    for pk, layer, verdict, reasons in Decision.objects.filter(opportunity_id__in=ids).values_list(
            "opportunity_id", "layer", "verdict", "reasons"):
        found[pk].append(f"{layer}={verdict}{reasons or ''}")
    return found


def latencies(sent: dict, done: dict) -> list[float]:
    return sorted((done[k] - sent[k]) * 1000 for k in sent)


def p(values, q):
    return values[int(q * (len(values) - 1))]


def create_at(rate: float, count: int) -> dict:
    """Create `count` opportunities at `rate` per second, each decided as a scanner's would be; returns pk -> wall time created."""
    created_at, began = {}, time.time()
    for n in range(count):
        delay = began + n / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        at = time.time()
        created_at[create_and_decide()] = at
    return created_at


def main() -> None:
    if not postgres_ready():
        sys.exit("bench-execute needs the machine's PostgreSQL and Redis")
    setup()
    from execution.tasks import decide
    from trifecta_site.celery import freeze_startup_objects
    from trifecta_site.tasks import probe

    notify_commits()
    env = {**os.environ, "DATABASE_URL": URL, "REDIS_URL": REDIS, "TRIFECTA_FEED": "replay",
           "TRIFECTA_RECORDING": str(RECORDING), "LOG_LEVEL": "WARNING"}
    with Commits() as commits:
        workers = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "trifecta_site", "worker", "-Q", "desk",
                                     "-n", f"desk{n}@%h", "--pool", "solo", "--without-gossip", "--without-mingle",
                                     "--loglevel", "WARNING"], cwd=ROOT, env=env, start_new_session=True)
                   for n in range(1, DESK_WORKERS + 1)]
        try:
            warm, burst = created(20), created(BURST)  # stored before anything is measured
            send(warm, decide, None)
            try:
                commits.wait(warm, 60)
            except RuntimeError:
                print("warm-up not booked; the opportunities' status and verdicts:", warm_up_verdicts(warm), file=sys.stderr)
                raise
            freeze_startup_objects()  # this process stands for the scan worker, which does so once set up

            figures = {}
            for label, rate, count in (("sustained", RATE, SUSTAINED), ("burst", None, BURST)):
                names = [f"{label}-{n}" for n in range(count)]
                sent = send(names, probe, rate)
                done = commits.wait(names)
                base = latencies(sent, done)
                base_drain = max(done.values()) - min(sent.values())
                sent = create_at(rate, count) if rate else send(burst, decide, None)
                done = commits.wait(list(sent))
                lat = latencies(sent, done)
                drain = max(done.values()) - min(sent.values())
                figures[label] = (lat, base, drain, base_drain)
        finally:
            for worker in workers:
                os.killpg(worker.pid, 15)
            for worker in workers:
                worker.wait(30)

    lat, base, _, _ = figures["sustained"]
    metrics = {
        "sustained_200_per_s_p50": metric(statistics.median(lat), "ms", statistics.median(base), "none (the p99 is the target)",
                                          True),
        "sustained_200_per_s_p99": metric(p(lat, 0.99), "ms", p(base, 0.99), "<= 50 ms", p(lat, 0.99) <= 50),
    }
    lat, base, drain, base_drain = figures["burst"]
    metrics["burst_1000_drain"] = metric(drain, "s", base_drain, "<= 5 s", drain <= 5)
    metrics["burst_1000_p99"] = metric(p(lat, 0.99), "ms", p(base, 0.99), "none (the drain time is the target)", True)
    write_results("execute", metrics)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--listen"]:
        listen(sys.argv[2])
    else:
        main()
