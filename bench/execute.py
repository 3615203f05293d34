"""End-to-end execution latency with real workers on Redis and PostgreSQL.

From an approved opportunity's `execute` task being queued to its trade row committed
(`Trade.booked_at`), p50/p99, at a sustained 200 opportunities/s and for a burst of 1,000
queued at once (all in the desk queue at the same instant; drain time). Baseline, measured in the same run on the same worker: the
bare Celery round trip, enqueue → the `probe` task's committed row. The desk workers run
as README's production layout runs them: one solo-pool worker process per core.

The fill model runs with the `optimistic` preset here: the realistic preset waits out
its simulated 250 ms latency, which is market time, not desk overhead.

Targets: p99 < 25 ms at 200/s; the burst drained in < 3 s; each within 3x of the
bare round trip. Results: bench/results/execute.json.
"""
import os
import statistics
import subprocess
import sys
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
           "expected_profit": "1", "expected_profit_usd": "1"}


def setup() -> None:
    os.environ.update(DATABASE_URL=URL, REDIS_URL=REDIS, LOG_LEVEL="ERROR")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from execution.models import Balance, ExecutionSettings, Fill, Portfolio, Trade
    from decisions.models import Decision
    from scanners.models import Opportunity

    Fill.objects.all().delete()
    Trade.objects.all().delete()
    Decision.objects.all().delete()
    Opportunity.objects.all().delete()
    Balance.objects.all().delete()
    Portfolio.objects.all().delete()
    ExecutionSettings.objects.update_or_create(pk=1, defaults={"realism": "optimistic", "inventory_usd": D("1000000")})


def approved(count: int) -> list[int]:
    from django.utils import timezone

    from decisions.models import Decision
    from scanners.models import Opportunity

    now = timezone.now()
    opps = Opportunity.objects.bulk_create(
        Opportunity(kind="arbitrage", type="cross_venue", symbol="BTC/USDT", venues=["binance", "kraken"], route="xv:BTC/USDT:binance>kraken",
                    risk_score=D("10"), figures=FIGURES, rank=1, observed_at=now, market_ts=T0, detected_at=now)
        for n in range(count))
    Decision.objects.bulk_create(
        Decision(opportunity=o, layer=layer, verdict=verdict, size_usd=D("3.7"), decided_at=now, market_ts=T0)
        for o in opps for layer, verdict in (("agent", "approve"), ("risk", "approved"), ("governor", "execute")))
    return [o.pk for o in opps]


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


def wait_rows(rows, count: int, timeout_s: float = 120) -> dict:
    """The rows once `count` are there; polled by counting, so the wait takes little CPU from the workers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if rows.count() >= count:
            return dict(rows)
        time.sleep(0.05)
    raise RuntimeError(f"only {rows.count()} of {count} rows after {timeout_s} s")


def latencies(sent: dict, done: dict) -> list[float]:
    return sorted((done[k].timestamp() - sent[k]) * 1000 for k in sent)


def p(values, q):
    return values[int(q * (len(values) - 1))]


def main() -> None:
    if not postgres_ready():
        sys.exit("bench-execute needs the machine's PostgreSQL and Redis")
    setup()
    from execution.models import Trade
    from execution.tasks import execute
    from trifecta_site.models import Heartbeat
    from trifecta_site.tasks import probe

    env = {**os.environ, "DATABASE_URL": URL, "REDIS_URL": REDIS, "TRIFECTA_FEED": "replay",
           "TRIFECTA_RECORDING": str(RECORDING), "LOG_LEVEL": "WARNING"}
    workers = [subprocess.Popen([sys.executable, "-m", "celery", "-A", "trifecta_site", "worker", "-Q", "desk",
                                 "-n", f"desk{n}@%h", "--pool", "solo", "--without-gossip", "--without-mingle",
                                 "--loglevel", "WARNING"], cwd=ROOT, env=env, start_new_session=True)
               for n in range(1, DESK_WORKERS + 1)]
    try:
        warm = approved(20)
        send(warm, execute, None)
        wait_rows(Trade.objects.filter(opportunity_id__in=warm).values_list("opportunity_id", "booked_at"), len(warm), 60)

        def probes(prefix):
            return Heartbeat.objects.filter(process="probe", hostname__startswith=prefix).values_list("hostname", "seen_at")

        def trades(ids):
            return Trade.objects.filter(opportunity_id__in=ids).values_list("opportunity_id", "booked_at")

        figures = {}
        for label, rate, count in (("sustained", RATE, SUSTAINED), ("burst", None, BURST)):
            names = [f"{label}-{n}" for n in range(count)]
            sent = send(names, probe, rate)
            done = wait_rows(probes(f"{label}-"), count)
            base = latencies(sent, done)
            base_drain = max(done.values()).timestamp() - min(sent.values())
            ids = approved(count)
            sent = send(ids, execute, rate)
            done = wait_rows(trades(ids), count)
            lat = latencies(sent, done)
            drain = max(done.values()).timestamp() - min(sent.values())
            figures[label] = (lat, base, drain, base_drain)
    finally:
        for worker in workers:
            os.killpg(worker.pid, 15)
        for worker in workers:
            worker.wait(30)

    lat, base, _, _ = figures["sustained"]
    metrics = {
        "sustained_200_per_s_p50": metric(statistics.median(lat), "ms", statistics.median(base), "within 3x of the bare round trip",
                                          statistics.median(lat) <= 3 * statistics.median(base)),
        "sustained_200_per_s_p99": metric(p(lat, 0.99), "ms", p(base, 0.99), "< 25 ms and within 3x of the bare round trip",
                                          p(lat, 0.99) < 25 and p(lat, 0.99) <= 3 * p(base, 0.99)),
    }
    lat, base, drain, base_drain = figures["burst"]
    metrics["burst_1000_drain"] = metric(drain, "s", base_drain, "< 3 s and within 3x of the bare round trip",
                                         drain < 3 and drain <= 3 * base_drain)
    metrics["burst_1000_p99"] = metric(p(lat, 0.99), "ms", p(base, 0.99), "within 3x of the bare round trip",
                                       p(lat, 0.99) <= 3 * p(base, 0.99))
    write_results("execute", metrics)


if __name__ == "__main__":
    main()
