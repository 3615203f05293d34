"""A bounded soak of the full desk in README's production layout, under operator load.

Why: the benches measure one path at a time for seconds; leaks, queues that creep and
latency that drifts only show when every process runs together for minutes.

Desk: PostgreSQL (database trifecta_soak, created afresh), a private redis-server
(never the machine's shared one), web (gunicorn, 2 workers), stream (uvicorn, 2 workers),
a scan worker (-Q scan), two desk workers (-Q desk, solo pool), beat; a replay at
SOAK_REPLAY_SPEED (default 20) of a crypto+forex recording (see recording()), auto-execute
on, risk limits opened, for SOAK_SECONDS (default 600).
Load: SOAK_API_CLIENTS (100) API clients with a staff token reading the lists,
/api/stats/, /api/risk/ and /api/portfolio/ (each waits SOAK_API_PAUSE_S between its
requests, as a polling dashboard does), and SOAK_WS_CLIENTS (200) WebSocket clients on
/ws/stream/ connected for the whole soak.
Then beat stops, the desk drains, and the database is checked for anything lost.

Checked: RSS of every process (its children included) after a warm-up and at the end
(desk worker processes < 150 MB each and < 5 % growth, scan worker < 400 MB); no ERROR
or Traceback in any log; Redis LLEN of the queues every 2 s; p99 decision latency
(governor verdict - opportunity detected) per minute; API statuses (0 5xx); WebSocket
clients never disconnected, every client the same events (dropped = shortfall against
the client that got most); after the drain every opportunity has its three verdicts and
every executed one exactly one trade.

`make soak` (SOAK_SECONDS=60 for a short run): figures printed and written to
bench/results/soak.json; tests/reliability/test_soak.py runs `soak()` for 60 s.
"""
import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import psycopg
import redis
from common import ROOT, metric, open_streams, postgres_ready, write_results

from tests.integration import processes
from trifecta_site import embedded

DATABASE = "trifecta_soak"
DB_URL = f"postgres://postgres@127.0.0.1:5432/{DATABASE}"
API_PATHS = ["/api/opportunities/", "/api/decisions/", "/api/trades/", "/api/positions/", "/api/scans/",
             "/api/stats/", "/api/risk/", "/api/portfolio/"]
WS_KINDS = "opportunity,decision,trade,stats"
QUEUES = ("scan", "desk")
DESK_MB, SCAN_MB, DESK_GROWTH_PCT = 150, 400, 5
LOG_PROBLEM = re.compile(r"\bERROR\b|Traceback")


def recording(workdir: Path) -> tuple[Path, int]:
    """SOAK_RECORDING, else tests/execution/synthetic.py's market (two crypto venues with
    dislocations, a forex broker), on which all three kinds find and trade something.
    The shared recordings tried (coinbase-oanda-2018-04-04, binanceus-kraken-2023-03)
    gave the scanners nothing to keep at high speed, even with lenient thresholds.
    Also how far into the recording the soak starts, in ms: past the synthetic market's
    hour of forex-only history, so crypto is quoted from the first second."""
    if os.environ.get("SOAK_RECORDING"):
        return Path(os.environ["SOAK_RECORDING"]).resolve(), 0
    from tests.execution.synthetic import FOREX_LEAD_S, write_market

    path = workdir / "synthetic"
    if not path.is_dir():
        write_market(path, minutes=120)
    return path, (FOREX_LEAD_S + 60) * 1000


def manage(env: dict, *args: str) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True,
                          capture_output=True, text=True).stdout


def staff_token(env: dict) -> str:
    code = ("from django.contrib.auth import get_user_model; from rest_framework.authtoken.models import Token;"
            "u = get_user_model().objects.create_user('soak', password='soak-password-1', is_staff=True);"
            "print(Token.objects.create(user=u).key)")
    return manage(env, "shell", "-c", code).strip().splitlines()[-1]


def busy_desk(env: dict) -> None:
    """Scans every second (as an operator sets in admin) and every arbitrage kept and
    auto-executed, looser forex signals, and risk limits an operator opens for a load test
    (the lenient thresholds lose money: with the default limits the day's loss budget stops
    execution within minutes), so the whole pipeline (decide, execute, monitor) works all the
    soak; quotes may be as old as the replay speed makes them between scans. Thresholds are
    written past the admin's validation, as the fault tests do
    (tests/reliability/test_faults.py keep_every_arbitrage)."""
    code = ("from decimal import Decimal as D; from scanners.models import ArbitrageSettings, ForexSettings;"
            "ArbitrageSettings.get_solo(); ForexSettings.get_solo();"
            "ArbitrageSettings.objects.update(min_net_pct=D('-1'), max_risk_score=D('100'), auto_min_net_pct=D('-1'),"
            " auto_min_profit_usd=D('-1000'), auto_max_risk=D('100'), max_quote_age_ms=3_600_000);"
            "ForexSettings.objects.update(min_confidence=D('0.3'), min_risk_reward=D('0.5'),"
            " auto_min_confidence=D('0.3'), auto_min_risk_reward=D('0.5'));"
            "from decisions.models import RiskLimits; RiskLimits.get_solo();"
            "RiskLimits.objects.update(max_trades_per_day=1_000_000, max_daily_loss=D('1000000'),"
            " max_consecutive_losses=1_000_000, drawdown_halt_pct=D('100'));"
            "from django_celery_beat.models import IntervalSchedule, PeriodicTask;"
            "every = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)[0];"
            "PeriodicTask.objects.filter(name__in=['scan arbitrage', 'scan binary', 'scan forex']).update(interval=every)")
    manage(env, "shell", "-c", code)


def start_desk(env: dict, logs: Path, port: int, stream_port: int) -> dict:
    """README's production layout, each process logging to its own file: HTTP on gunicorn
    and the stream on uvicorn (README's proxy sends /ws/ there; the clients go to each
    tier's port directly)."""
    celery = [sys.executable, "-m", "celery", "-A", "trifecta_site"]
    common = ["--without-gossip", "--without-mingle", "--loglevel", "INFO"]
    started = {}
    try:
        started["web"] = processes.spawn([sys.executable, "-m", "gunicorn", "trifecta_site.wsgi:application", "--bind",
                                           f"127.0.0.1:{port}", "--workers", "2"], env, logs / "web.log", "web")
        processes.wait_for_http(f"http://127.0.0.1:{port}/admin/login/", started["web"], logs / "web.log", timeout_s=60)
        started["stream"] = processes.spawn([sys.executable, "-m", "uvicorn", "trifecta_site.asgi:application", "--host",
                                              "127.0.0.1", "--port", str(stream_port), "--workers", "2"],
                                             env, logs / "stream.log", "stream")
        processes.wait_for_http(f"http://127.0.0.1:{stream_port}/admin/login/", started["stream"], logs / "stream.log",
                                timeout_s=60)
        started["scan"] = processes.spawn([*celery, "worker", "-Q", "scan", "-n", "scan@%h", "--concurrency", "1", *common],
                                           env, logs / "scan.log", "scan")
        for n in (1, 2):  # README: solo desk workers, one per core
            started[f"desk{n}"] = processes.spawn([*celery, "worker", "-Q", "desk", "-n", f"desk{n}@%h", "--pool", "solo",
                                                    *common], env, logs / f"desk{n}.log", f"desk{n}")
        started["beat"] = processes.spawn([*celery, "beat", "--loglevel", "INFO"], env, logs / "beat.log", "beat")
    except BaseException:
        processes.stop(*started.values())
        raise
    return started


def rss_mb(process: subprocess.Popen) -> dict:
    """RSS of a process and of each of its descendants, in MB."""
    root = psutil.Process(process.pid)
    found = {}
    for p in [root, *root.children(recursive=True)]:
        try:
            found[p.pid] = p.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            pass
    return found


class Sampler(threading.Thread):
    """Queue lengths every 2 s while the soak runs."""

    def __init__(self, broker: redis.Redis):
        super().__init__(daemon=True)
        self.broker, self.samples, self.done = broker, [], threading.Event()

    def run(self):
        while not self.done.wait(2):
            try:
                self.samples.append({q: self.broker.llen(q) for q in QUEUES})
            except redis.RedisError:
                self.samples.append({q: -1 for q in QUEUES})


async def api_load(base: str, token: str, clients: int, pause_s: float, stop: asyncio.Event) -> Counter:
    import aiohttp

    statuses = Counter()

    async def client(session, n):
        i = n
        while not stop.is_set():
            try:
                async with session.get(base + API_PATHS[i % len(API_PATHS)]) as response:
                    await response.read()
                    statuses[response.status] += 1
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                statuses[type(exc).__name__] += 1
            i += 1
            try:
                await asyncio.wait_for(stop.wait(), pause_s)
            except asyncio.TimeoutError:
                pass

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector, headers={"Authorization": f"Token {token}"},
                                     timeout=aiohttp.ClientTimeout(total=60)) as session:
        await asyncio.gather(*(client(session, n) for n in range(clients)))
    return statuses


async def ws_clients(port: int, token: str, count: int, connected: asyncio.Event, stop: asyncio.Event) -> dict:
    """Each client counts what it receives; one that is closed before `stop` counts as disconnected."""
    import websockets

    sockets = await open_streams(port, token, WS_KINDS, count)
    connected.set()

    async def receive(socket):
        kinds = Counter()
        try:
            while True:
                raw = await socket.recv()
                kinds[json.loads(raw).get("type", "?")] += 1
        except websockets.ConnectionClosed:
            return kinds, not stop.is_set()

    readers = [asyncio.create_task(receive(s)) for s in sockets]
    await stop.wait()
    await asyncio.gather(*(s.close() for s in sockets), return_exceptions=True)
    results = await asyncio.gather(*readers)
    received = [sum(k.values()) for k, _ in results]
    return {"clients": count, "disconnected": sum(d for _, d in results), "received": sum(received),
            "per_client_max": max(received), "per_client_min": min(received),
            "dropped": sum(max(received) - r for r in received),
            "kinds": dict(sum((k for k, _ in results), Counter()))}


def latency_per_minute(conn, began: float, speed: int) -> list[dict]:
    """p99 per minute of the soak (by detection) of the wall time from detection to the
    governor's verdict, in ms. Verdicts are stamped on the feed's clock (replay time), so
    the wall time is the feed-clock difference divided by the replay speed."""
    rows = conn.execute(
        """SELECT floor((extract(epoch FROM o.detected_at) - %s) / 60)::int AS minute, count(*),
                  percentile_cont(0.99) WITHIN GROUP (ORDER BY (d.market_ts - o.market_ts)::float / %s),
                  percentile_cont(0.5) WITHIN GROUP (ORDER BY (d.market_ts - o.market_ts)::float / %s)
           FROM decisions_decision d JOIN scanners_opportunity o ON o.id = d.opportunity_id
           WHERE d.layer = 'governor' GROUP BY 1 ORDER BY 1""", (began, speed, speed)).fetchall()
    return [{"minute": m, "decisions": n, "p99_ms": round(p99, 1), "p50_ms": round(p50, 1)} for m, n, p99, p50 in rows]


def ledger(conn) -> dict:
    """What the database says after the drain: nothing undecided, one trade per execution."""
    one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
    return {
        "opportunities": one("SELECT count(*) FROM scanners_opportunity"),
        "by_kind": dict(conn.execute("SELECT kind, count(*) FROM scanners_opportunity GROUP BY 1").fetchall()),
        "by_status": dict(conn.execute("SELECT status, count(*) FROM scanners_opportunity GROUP BY 1").fetchall()),
        "without_three_verdicts": one("""SELECT count(*) FROM scanners_opportunity o WHERE
                                         (SELECT count(*) FROM decisions_decision d WHERE d.opportunity_id = o.id) <> 3"""),
        "to_execute": one("SELECT count(*) FROM decisions_decision WHERE layer = 'governor' AND verdict = 'execute'"),
        "to_execute_without_trade": one("""SELECT count(*) FROM decisions_decision d WHERE d.layer = 'governor'
                                           AND d.verdict = 'execute' AND NOT EXISTS
                                           (SELECT 1 FROM execution_trade t WHERE t.opportunity_id = d.opportunity_id)"""),
        "executed_without_one_trade": one("""SELECT count(*) FROM scanners_opportunity o WHERE o.status = 'executed'
                                             AND (SELECT count(*) FROM execution_trade t WHERE t.opportunity_id = o.id) <> 1"""),
        "trades": one("SELECT count(*) FROM execution_trade"),
        "trades_without_execute_verdict": one("""SELECT count(*) FROM execution_trade t WHERE NOT EXISTS
                                                 (SELECT 1 FROM decisions_decision d WHERE d.opportunity_id = t.opportunity_id
                                                  AND d.layer = 'governor' AND d.verdict = 'execute')"""),
        "fills": one("SELECT count(*) FROM execution_fill"),
    }


def drain(conn, broker: redis.Redis, quiet_s: float = 10, timeout_s: float = 180) -> float:
    """Wait until the queues are empty and no row has changed for `quiet_s`; seconds taken."""
    began = time.monotonic()
    last, still_since = None, time.monotonic()
    while time.monotonic() - began < timeout_s:
        now = (conn.execute("SELECT (SELECT count(*) FROM decisions_decision), (SELECT count(*) FROM execution_trade),"
                            " (SELECT count(*) FROM scanners_opportunity WHERE status = 'detected')").fetchone(),
               tuple(broker.llen(q) for q in QUEUES))
        if now != last:
            last, still_since = now, time.monotonic()
        elif not any(now[1]) and time.monotonic() - still_since >= quiet_s:
            break
        time.sleep(1)
    return time.monotonic() - began


def log_problems(logs: Path) -> dict:
    found = {}
    for log in sorted(logs.glob("*.log")):
        lines = [line for line in log.read_text(errors="replace").splitlines() if LOG_PROBLEM.search(line)]
        if lines:
            found[log.stem] = lines[:5] + ([f"... {len(lines)} in all"] if len(lines) > 5 else [])
    return found


def soak(seconds: int, workdir: Path, api_clients: int = 100, ws_count: int = 200, speed: int = 20,
         api_pause_s: float = 1.0) -> dict:
    """Run the desk under load for `seconds`, drain it, and return every figure (no verdicts)."""
    if not postgres_ready(DATABASE):
        raise RuntimeError("the soak needs PostgreSQL on 127.0.0.1:5432")
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    redis_port, port, stream_port = embedded.free_port(), embedded.free_port(), embedded.free_port()
    replayed, skip_ms = recording(workdir)
    env = {**os.environ, "DATABASE_URL": DB_URL, "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
           "DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "DEBUG": "false", "PYTHONUNBUFFERED": "1",
           "TRIFECTA_FEED": "replay", "TRIFECTA_RECORDING": str(replayed), "TRIFECTA_REPLAY_SPEED": str(speed),
           "TRIFECTA_REPLAY_ANCHOR_MS": str(time.time_ns() // 1_000_000 - int(skip_ms / speed)), "AUTO_EXECUTE": "true",
           "API_USER_RATE": "100000000/min", "PYTHONPATH": str(ROOT)}
    redis_process = embedded.start_redis(directory=workdir / "redis", port=redis_port, env=env)
    broker = redis.Redis(port=redis_port)
    desk = {}
    try:
        manage(env, "migrate", "--verbosity", "0")
        token = staff_token(env)
        busy_desk(env)
        desk = start_desk(env, logs, port, stream_port)
        figures = asyncio.run(_load(desk, port, stream_port, token, seconds, api_clients, ws_count, api_pause_s, broker))
        with psycopg.connect(DB_URL, autocommit=True) as conn:
            figures["latency_per_minute"] = latency_per_minute(conn, figures.pop("began"), speed)
            figures["ledger"] = ledger(conn)
    finally:
        processes.stop(*desk.values())
        embedded.stop([redis_process], grace_s=5)
    figures["log_problems"] = log_problems(logs)
    figures["recording"] = env["TRIFECTA_RECORDING"]
    figures["seconds"], figures["replay_speed"] = seconds, speed
    return figures


async def _load(desk, port, stream_port, token, seconds, api_clients, ws_count, api_pause_s, broker) -> dict:
    stop_api, stop_ws, connected = asyncio.Event(), asyncio.Event(), asyncio.Event()
    ws_task = asyncio.create_task(ws_clients(stream_port, token, ws_count, connected, stop_ws))
    await asyncio.wait_for(connected.wait(), 120)
    api_task = asyncio.create_task(api_load(f"http://127.0.0.1:{port}", token, api_clients, api_pause_s, stop_api))
    sampler = Sampler(broker)
    sampler.start()
    began = time.time()
    warm_up = min(60, max(10, seconds // 10))
    await asyncio.sleep(warm_up)
    rss_start = {name: rss_mb(p) for name, p in desk.items()}
    await asyncio.sleep(seconds - warm_up)
    rss_end = {name: rss_mb(p) for name, p in desk.items()}
    stop_api.set()
    statuses = await api_task
    sampler.done.set()
    # The stream clients stay connected through the drain: closed by the caller's stop_ws.
    figures = {"began": began, "rss_start": rss_start, "rss_end": rss_end, "api": dict(statuses),
               "queues": {q: max((s[q] for s in sampler.samples), default=0) for q in QUEUES},
               "queue_samples": len(sampler.samples)}
    figures["drain_s"], figures["ws"] = await _close_after_drain(ws_task, stop_ws, desk, broker)
    return figures


async def _close_after_drain(ws_task, stop_ws, desk, broker) -> tuple[float, dict]:
    """Beat stops and the desk drains while the clients listen, so every client can get every event."""
    processes.stop(desk.pop("beat"))
    with psycopg.connect(DB_URL, autocommit=True) as conn:
        drained_s = await asyncio.to_thread(drain, conn, broker)
    await asyncio.sleep(3)
    stop_ws.set()
    return round(drained_s, 1), await ws_task


def verdicts(f: dict) -> dict:
    """Each promise as a metric in bench/common.py's format (baseline: the value at the start where one exists)."""
    m = {}
    for name, start in f["rss_start"].items():
        end = f["rss_end"].get(name, {})
        for n, pid in enumerate(sorted(start)):
            if pid not in end:
                continue
            label = f"rss_{name}" + ("" if n == 0 else f"_child{n}")
            growth = 100 * (end[pid] - start[pid]) / start[pid]
            if name.startswith("desk"):
                met, target = end[pid] < DESK_MB and growth < DESK_GROWTH_PCT, f"< {DESK_MB} MB, growth < {DESK_GROWTH_PCT} %"
            elif name == "scan":
                met, target = end[pid] < SCAN_MB, f"< {SCAN_MB} MB"
            else:
                met, target = True, "reported"
            m[label] = metric(end[pid], "MB", start[pid], target, met, ratio=end[pid] / start[pid])
        m[f"rss_{name}_tree"] = metric(sum(end.values()), "MB", sum(start.values()), "reported", True,
                                       ratio=sum(end.values()) / sum(start.values()))
    api = f["api"]
    served = sum(v for k, v in api.items() if isinstance(k, int) or str(k).isdigit())
    errors_5xx = sum(v for k, v in api.items() if str(k).isdigit() and int(k) >= 500)
    failed = sum(v for k, v in api.items() if not str(k).isdigit())
    m["api_requests"] = metric(served, "requests", served, f"statuses {api}", served > 0, ratio=1)
    m["api_5xx"] = metric(errors_5xx + failed, "responses", 0, "0 (5xx and failed requests)", errors_5xx + failed == 0, ratio=1)
    ws = f["ws"]
    m["ws_events_delivered"] = metric(ws["received"], "events", ws["per_client_max"] * ws["clients"], "every client every event",
                                      ws["per_client_max"] > 0 and ws["dropped"] == 0)
    m["ws_dropped"] = metric(ws["dropped"], "events", 0, "0", ws["dropped"] == 0, ratio=1)
    m["ws_disconnected"] = metric(ws["disconnected"], "clients", 0, "0", ws["disconnected"] == 0, ratio=1)
    for q, top in f["queues"].items():
        m[f"queue_{q}_max"] = metric(top, "messages", 0, "< 100 (bounded)", 0 <= top < 100, ratio=1)
    minutes = [row for row in f["latency_per_minute"] if row["decisions"] >= 5]
    if len(minutes) > 2:  # the first minute is the warm-up (RSS is read after it too): compare with the next
        minutes = minutes[1:]
    if minutes:
        first, last = minutes[0]["p99_ms"], minutes[-1]["p99_ms"]
        worst = max(row["p99_ms"] for row in minutes)
        m["decision_p99_last_minute"] = metric(last, "ms", first, "<= 2x the first minute's p99 after the warm-up (+50 ms)",
                                               last <= 2 * first + 50)
        m["decision_p99_worst_minute"] = metric(worst, "ms", first, "<= 3x the first minute's p99 after the warm-up (+100 ms)",
                                                worst <= 3 * first + 100)
    else:
        m["decision_p99_last_minute"] = metric(0, "ms", 0, "decisions every minute", False, ratio=1)
    led = f["ledger"]
    lost = led["without_three_verdicts"] + led["to_execute_without_trade"] + led["executed_without_one_trade"]
    m["lost"] = metric(lost, "opportunities", 0, f"0 (of {led['opportunities']}; trades {led['trades']})", lost == 0, ratio=1)
    m["executions_traded_once"] = metric(led["trades"], "trades", led["to_execute"], "one per execute verdict",
                                         led["trades"] == led["to_execute"] and led["trades_without_execute_verdict"] == 0
                                         and led["to_execute"] > 0, ratio=1)
    problems = sum(len(v) for v in f["log_problems"].values())
    m["log_errors"] = metric(problems, "lines", 0, "0 ERROR/Traceback", problems == 0, ratio=1)
    return m


def main() -> None:
    seconds = int(os.environ.get("SOAK_SECONDS", "600"))
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    f = soak(seconds, workdir, api_clients=int(os.environ.get("SOAK_API_CLIENTS", "100")),
             ws_count=int(os.environ.get("SOAK_WS_CLIENTS", "200")),
             speed=int(os.environ.get("SOAK_REPLAY_SPEED", "20")),
             api_pause_s=float(os.environ.get("SOAK_API_PAUSE_S", "1.0")))
    print(f"logs of every process: {workdir / 'logs'}")
    print(json.dumps({k: v for k, v in f.items() if k not in ("rss_start", "rss_end")}, indent=1, default=str))
    write_results("soak", verdicts(f))


if __name__ == "__main__":
    main()
