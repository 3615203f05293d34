"""What every benchmark shares: timing helpers and the results file format."""
import asyncio
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")


def timed(function, repeat: int = 5) -> float:
    """Best wall time of `repeat` runs, in seconds (the least disturbed by a noisy machine)."""
    best = float("inf")
    for _ in range(repeat):
        began = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - began)
    return best


def metric(value, unit, baseline, target, met, ratio=None):
    return {
        "value": round(value, 6), "unit": unit, "baseline": round(baseline, 6),
        "ratio": round(ratio if ratio is not None else (baseline / value if value else float("inf")), 2),
        "target": target, "met": bool(met),
    }


def write_results(name: str, metrics: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(metrics, indent=2) + "\n")
    for key, m in metrics.items():
        print(f"{key}: {m['value']} {m['unit']} (baseline {m['baseline']}, ratio {m['ratio']}x, target {m['target']}: {'met' if m['met'] else 'MISSED'})")
    print(f"wrote {path.relative_to(ROOT)}")
    return path


async def open_streams(port: int, token: str, kinds: str, count: int) -> list:
    """`count` WebSocket clients on /ws/stream/ as a script connects (token, the host's Origin),
    each past its `subscribed` answer."""
    import websockets

    url = f"ws://127.0.0.1:{port}/ws/stream/?kinds={kinds}&token={token}"
    headers = {"Origin": f"http://127.0.0.1:{port}"}
    sockets = await asyncio.gather(*(websockets.connect(url, additional_headers=headers, open_timeout=60, max_queue=None)
                                     for _ in range(count)))
    for s in sockets:
        assert json.loads(await asyncio.wait_for(s.recv(), 30))["type"] == "subscribed"
    return sockets


def postgres_ready(database: str = "trifecta_bench") -> bool:
    """The machine's PostgreSQL answers; the benchmark database is created afresh for this run."""
    try:
        import psycopg

        with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True, connect_timeout=3) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{database}"')
        return True
    except Exception as exc:
        print(f"PostgreSQL not reachable, its figures are skipped: {exc}")
        return False
