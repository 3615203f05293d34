"""Start real desk processes (web, worker, beat) for integration tests.

They share the test database and the test run's Redis, so what a worker writes or
publishes is seen exactly as in production.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import redis
import requests
from django.conf import settings
from django.db import connection

from tests.waiting import poll
from trifecta_site import embedded
from trifecta_site.models import configuration_changed

ROOT = Path(__file__).resolve().parents[2]
FIXTURE_RECORDING = ROOT / "tests" / "fixtures" / "recordings" / "desk-smoke"


def database_url() -> str:
    """A URL for the database this test process uses (the test database)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def desk_env(**overrides) -> dict:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url(),
        REDIS_URL=settings.REDIS_URL,
        TRIFECTA_FEED="replay",
        TRIFECTA_RECORDING=str(FIXTURE_RECORDING),
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="trifecta_site.settings",
    )
    env.update({k: str(v) for k, v in overrides.items()})
    return env


def start_worker(env: dict, log: Path, queues: str = "scan,desk", pool: str = "prefork") -> subprocess.Popen:
    args = [
        sys.executable, "-m", "celery", "-A", "trifecta_site", "worker", "-Q", queues, "--pool", pool,
        "--concurrency", "1", "--without-gossip", "--without-mingle", "-n", f"test-{os.getpid()}@%h",
        "--loglevel", "INFO",
    ]
    return spawn(args, env, log, "worker")


def start_beat(env: dict, log: Path, schedule_dir: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "celery", "-A", "trifecta_site", "beat", "--loglevel", "INFO"]
    return spawn(args, env, log, "beat")


def start_web(env: dict, log: Path, port: int) -> subprocess.Popen:
    args = [sys.executable, "-m", "uvicorn", "trifecta_site.asgi:application", "--host", "127.0.0.1", "--port", str(port)]
    process = spawn(args, env, log, "web")
    wait_for_http(f"http://127.0.0.1:{port}/api/health/", process, log)
    return process


def spawn(args, env, log: Path, name: str) -> subprocess.Popen:
    handle = log.open("ab")
    process = subprocess.Popen(args, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    process.trifecta_name = name
    return process


def wait_for_http(url: str, process: subprocess.Popen, log: Path, timeout_s: float = 30) -> None:
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


def configuration_changed_everywhere() -> None:
    """A new configuration version: every running process reads the configuration rows again
    at its next use (a test's emptied database replaced them without a save)."""
    configuration_changed()


def wait_for_idle_queues(redis_url: str, queues=("desk", "scan"), timeout_s: float = 30) -> bool:
    """Until the workers have taken every queued task and acknowledged every task they took
    (False after `timeout_s`: on a Redis shared with other test runs the queues may never be idle)."""
    client = redis.Redis.from_url(redis_url)
    return bool(poll(lambda: not any(client.llen(queue) for queue in queues) and not client.hlen("unacked"), timeout_s))


def stop(*processes: subprocess.Popen) -> None:
    embedded.stop([p for p in processes if p is not None], grace_s=10)

