"""The operators' surfaces under load, served as README's production layout serves them.

API: list endpoints, pages of 50 (the newest 20 pages, in turn, as dashboards and
polling scripts read them) on tables of 30,000 rows in PostgreSQL, 8 concurrent
connections (wrk where installed, else Python threads) against the HTTP tier:
gunicorn, 2 sync worker processes (DEBUG off), as README's layout runs it: requests/s and
p99 per endpoint. Baseline, same server, same run: a plain Django view returning the
same page of opportunities as JSON without DRF (`bench/bench_urls.py`).
Targets (issue 26): >= 300 req/s and p99 <= 50 ms on 2 cores.

WebSocket fan-out, against the stream tier (uvicorn, 2 workers): 200 clients connected at once; events are
published from another process at 20 broadcasts/s for 10 s; every client must receive
every event. Delivery latency = receive time - the event's `ts`. Targets: p99 < 100 ms,
zero dropped events. Baseline: the same events' publish-call time in the publisher.

Results: bench/results/surfaces.json.
"""
import asyncio
import gc
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests
from common import ROOT, metric, open_streams, postgres_ready, write_results


URL = "postgres://postgres@127.0.0.1:5432/trifecta_bench"
REDIS = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/11")
ROWS, CONNECTIONS, SECONDS, CLIENTS, RATE, BROADCAST_S = 30_000, 8, 8, 200, 20, 10
RECENT_PAGES = 20  # clients read the newest rows: pages 1-20 (1,000 rows) of the 30,000, in turn
ENV = {**os.environ, "DATABASE_URL": URL, "REDIS_URL": REDIS, "DEBUG": "false", "LOG_LEVEL": "WARNING",
       "DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "API_USER_RATE": "100000000/min",
       "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'bench'}"}


def setup() -> str:
    os.environ.update({k: ENV[k] for k in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "LOG_LEVEL")})
    import django

    django.setup()
    from decimal import Decimal as D

    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.utils import timezone
    from rest_framework.authtoken.models import Token

    from decisions.models import Decision
    from execution.models import Fill, Trade
    from execution.portfolio import current_portfolio
    from scanners.models import Opportunity, ScanRun

    call_command("migrate", verbosity=0)
    now = timezone.now()
    figures = {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "a", "sell_venue": "b", "buy_price": "100",
               "sell_price": "101", "size": "1", "net_pct": "0.6", "expected_profit": "1", "expected_profit_usd": "1"}
    opps = Opportunity.objects.bulk_create(
        (Opportunity(kind="arbitrage", type="cross_venue", symbol="BTC/USDT", venues=["a", "b"], route=f"r{n % 50}",
                     risk_score=D("10"), net_pct=D("0.6"), figures=figures, rank=1, observed_at=now, market_ts=n,
                     detected_at=now, status="executed") for n in range(ROWS)), batch_size=2000)
    Decision.objects.bulk_create((Decision(opportunity=o, layer=layer, verdict="x", reasons=["DISPLAY_ONLY"], decided_at=now,
                                           market_ts=0) for o in opps for layer in ("agent", "risk", "governor")), batch_size=5000)
    portfolio = current_portfolio()
    trades = Trade.objects.bulk_create((Trade(portfolio=portfolio, opportunity=o, kind="arbitrage", route=o.route,
                                              symbol="BTC/USDT", venues=["a", "b"], status="closed", opened_ts=0,
                                              opened_at=now, realized_pnl=D("1.5")) for o in opps), batch_size=2000)
    Fill.objects.bulk_create((Fill(trade=t, leg=leg, venue="a", symbol="BTC/USDT", side="buy", requested=1, quantity=1,
                                   price=100, filled_ts=0) for t in trades for leg in (1, 2)), batch_size=5000)
    ScanRun.objects.bulk_create((ScanRun(kind="arbitrage", started_at=now, market_ts=n, duration_ms=D("1.5"))
                                 for n in range(ROWS)), batch_size=5000)
    user = get_user_model().objects.create_user("bench", password="bench-password-1", is_staff=True)
    from django.db import connection

    with connection.cursor() as cursor:  # what autovacuum does soon after a bulk load in production
        cursor.execute("VACUUM ANALYZE")
    return Token.objects.create(user=user).key


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    env = {**ENV, "DJANGO_SETTINGS_MODULE": "bench_settings"}
    web = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/api/health/", web, log, timeout_s=60)
    except BaseException:
        stop(web)
        raise
    return web


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: server exited early:\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or still loading the app
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer within {timeout_s} s:\n{log.read_text()[-3000:]}")


def stop(web: subprocess.Popen) -> None:
    os.killpg(web.pid, 15)
    web.wait(30)


WRK_SCRIPT = """
counter = 0
request = function()
  counter = counter + 1
  return wrk.format("GET", wrk.path .. "?page=" .. (counter % PAGES + 1))
end
"""


def load(url: str, token: str, pages: int) -> dict:
    """8 connections for SECONDS reading the newest pages in turn: wrk where installed
    (a C client, light on the cores it shares with the server), else Python threads."""
    if shutil.which("wrk"):
        with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
            script.write(WRK_SCRIPT.replace("PAGES", str(pages)))
        out = subprocess.run(["wrk", "-t2", f"-c{CONNECTIONS}", f"-d{SECONDS}s", "--latency", "-s", script.name,
                              "-H", f"Authorization: Token {token}", url], capture_output=True, text=True, check=True).stdout
        os.unlink(script.name)
        p99 = re.search(r"^\s*99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        return {"per_s": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
                "p99": float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)],
                "errors": int(errors.group(1)) if errors else 0, "client": "wrk"}
    return python_load(url, token, pages)


def python_load(url: str, token: str, pages: int) -> dict:
    latencies, errors, stop = [], [], time.monotonic() + SECONDS

    def client(n):
        session = requests.Session()
        session.headers["Authorization"] = f"Token {token}"
        page = n * 37 % pages + 1
        while time.monotonic() < stop:
            began = time.perf_counter()
            response = session.get(url, params={"page": page})
            latencies.append((time.perf_counter() - began) * 1000)
            if response.status_code != 200:
                errors.append(response.status_code)
            page = page % pages + 1

    threads = [threading.Thread(target=client, args=(n,)) for n in range(CONNECTIONS)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - began
    latencies.sort()
    return {"per_s": len(latencies) / elapsed, "p99": latencies[int(0.99 * (len(latencies) - 1))], "errors": len(errors),
            "client": "python threads"}


async def fan_out(port: int, token: str) -> dict:
    import websockets

    sockets = await open_streams(port, token, "stats", CLIENTS)
    expected = RATE * BROADCAST_S
    delays = []

    async def receive(socket):
        """Stamp each message as it arrives; decode after the run (the clients share the server's cores)."""
        arrived = []
        try:
            while len(arrived) < expected:
                raw = await asyncio.wait_for(socket.recv(), 10)
                arrived.append((time.time() * 1000, raw))
        except (asyncio.TimeoutError, websockets.ConnectionClosed):
            pass
        delays.extend(at - json.loads(raw)["ts"] for at, raw in arrived)
        return len(arrived)

    publisher = subprocess.Popen([sys.executable, "-c", PUBLISHER, str(RATE), str(BROADCAST_S)], cwd=ROOT, env=ENV,
                                 stdout=subprocess.PIPE, text=True)
    seen = await asyncio.gather(*(receive(s) for s in sockets))
    publish_ms = json.loads(publisher.communicate(timeout=60)[0])
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    delays.sort()
    return {"p99": delays[int(0.99 * (len(delays) - 1))], "p50": statistics.median(delays),
            "dropped": expected * CLIENTS - sum(seen), "publish_p99": publish_ms}


PUBLISHER = """
import json, sys, time, django
django.setup()
from trifecta_site import events
rate, seconds = int(sys.argv[1]), int(sys.argv[2])
took, began = [], time.monotonic()
for n in range(rate * seconds):
    delay = began + n / rate - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    t = time.perf_counter()
    assert events.publish("stats", {"n": n})
    took.append((time.perf_counter() - t) * 1000)
took.sort()
print(json.dumps(took[int(0.99 * (len(took) - 1))]))
"""


def main() -> None:
    if not postgres_ready():
        sys.exit("bench-surfaces needs the machine's PostgreSQL and Redis")
    token = setup()
    # The stream's clients run in this process, which has just built the 30,000-row tables:
    # the garbage collector's full passes over what that left paused them, and the fan-out's
    # p99 read 135-290 ms instead of 27-30 ms.
    gc.collect()
    gc.freeze()
    from trifecta_site.embedded import free_port

    port, logs = free_port(), Path(tempfile.mkdtemp(prefix="surfaces-"))
    print(f"server logs: {logs}")
    http = start([sys.executable, "-m", "gunicorn", "trifecta_site.wsgi:application", "--bind", f"127.0.0.1:{port}",
                  "--workers", "2", "--log-level", "warning"], port, logs / "http.log")
    try:
        base = f"http://127.0.0.1:{port}"
        pages = RECENT_PAGES
        baseline = load(f"{base}/plain/opportunities/", token, pages)
        print(f"HTTP load client: {baseline['client']}")
        metrics = {}
        for name in ("opportunities", "decisions", "trades", "scans"):
            figures = load(f"{base}/api/{name}/", token, pages)
            ok = figures["p99"] <= 50 and not figures["errors"]  # req/s has its own metric
            metrics[f"api_{name}_requests_per_s"] = metric(figures["per_s"], "req/s", baseline["per_s"], ">= 300 req/s",
                                                           figures["per_s"] >= 300, ratio=figures["per_s"] / baseline["per_s"])
            metrics[f"api_{name}_p99"] = metric(figures["p99"], "ms", baseline["p99"], "<= 50 ms, no errors", ok)
    finally:
        stop(http)
    stream = start([sys.executable, "-m", "uvicorn", "trifecta_site.asgi:application", "--host", "127.0.0.1",
                    "--port", str(port), "--workers", "2", "--log-level", "warning"], port, logs / "stream.log")
    try:
        fan = asyncio.run(fan_out(port, token))
        metrics["ws_fanout_200_clients_p99_delivery"] = metric(fan["p99"], "ms", fan["publish_p99"], "< 100 ms",
                                                               fan["p99"] < 100)
        metrics["ws_fanout_dropped_events"] = metric(fan["dropped"], "events", 0, "0", fan["dropped"] == 0, ratio=1.0)
    finally:
        stop(stream)
    write_results("surfaces", metrics)


if __name__ == "__main__":
    main()
