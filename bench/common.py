"""What every benchmark shares: timing helpers and the results file format."""
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
