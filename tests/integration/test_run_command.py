"""`manage.py run` end to end, as `make run` starts it: the whole desk comes up, health
is green, admin logs in with the printed credentials, Ctrl-C leaves no process behind."""
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests
from django.conf import settings
from django.db import connection

from trifecta_site import embedded

from . import processes

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (Linux /proc)."""
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


class RunningDesk:
    def __init__(self, env: dict, port: int, cwd: Path = processes.ROOT):
        self.port = port
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "manage.py", "run", "--port", str(port)],
            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            match = re.search(pattern, self.output)
            if match:
                return match
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"no {pattern!r} in the run command's output:\n{self.output[-4000:]}")

    def wait_healthy(self, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        body = None
        while time.monotonic() < deadline:
            try:
                response = requests.get(f"http://127.0.0.1:{self.port}/api/health/", timeout=3)
                body = response.json()
                if response.status_code == 200:
                    return body
            except requests.RequestException:
                pass
            time.sleep(1)
        raise AssertionError(f"health never turned 200: {body}\n{self.output[-4000:]}")


def exercise_desk(env: dict, expected_vendor: str):
    port = embedded.free_port()
    desk = RunningDesk(env, port)
    try:
        password = desk.wait_for(r"Log in as 'admin' with password: (\S+)", 120).group(1)
        assert f"Dashboard: http://127.0.0.1:{port}/" in desk.output
        assert f"Admin:     http://127.0.0.1:{port}/admin/" in desk.output
        health = desk.wait_healthy(120)
        checks = health["checks"]
        assert checks["database"] == {"status": "ok", "vendor": expected_vendor}
        assert checks["broker"]["status"] == "ok"
        assert checks["worker"]["status"] == "ok" and checks["beat"]["status"] == "ok"
        assert checks["feeds"]["feed"] == "replay"
        assert set(checks["feeds"]["venues"]) == {"binance", "kraken"}

        base = f"http://127.0.0.1:{port}"
        session = requests.Session()
        assert session.get(base + "/", allow_redirects=False).status_code == 302
        login = session.get(base + "/admin/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        admin = session.post(
            base + "/admin/login/?next=/admin/",
            data={"username": "admin", "password": password, "csrfmiddlewaretoken": token},
            headers={"Referer": base + "/admin/login/"},
        )
        assert admin.status_code == 200 and "Site administration" in admin.text
        dashboard = session.get(base + "/")
        assert dashboard.status_code == 200 and "Trifecta" in dashboard.text
        assert session.get(base + "/static/trifecta/desk.js").status_code == 200

        family = descendants(desk.process.pid)
        assert len(family) >= 3, family  # web, worker (+ its pool), beat (+ redis when embedded)
    finally:
        desk.process.send_signal(signal.SIGINT)
        try:
            code = desk.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(desk.process.pid, signal.SIGKILL)
            raise
    assert code == 0, desk.output[-4000:]
    assert "Desk stopped." in desk.output
    assert "WorkerLostError" not in desk.output  # the worker stopped its own pool, no task killed under it
    time.sleep(0.5)
    assert [pid for pid in family if alive(pid)] == []
    return desk


def base_env(tmp_path: Path) -> dict:
    env = dict(os.environ)
    for name in ("DATABASE_URL", "REDIS_URL", "DJANGO_SUPERUSER_PASSWORD", "DJANGO_SUPERUSER_USERNAME"):
        env.pop(name, None)
    env.update(
        TRIFECTA_VAR_DIR=str(tmp_path / "var"),
        TRIFECTA_FEED="replay",
        TRIFECTA_RECORDING=str(processes.FIXTURE_RECORDING),
        CELERY_CONCURRENCY="1",
        PYTHONUNBUFFERED="1",
    )
    return env


def test_run_starts_the_embedded_desk_on_sqlite_and_bundled_redis(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is exercised in the SQLite pass")
    env = base_env(tmp_path)
    desk = exercise_desk(env, "sqlite")
    assert "Starting the bundled Redis" in desk.output
    var = tmp_path / "var"
    assert (var / "trifecta.sqlite3").exists()
    secret = var / "secret_key"
    assert secret.exists() and oct(secret.stat().st_mode & 0o777) == "0o600"


@pytest.fixture
def fresh_postgres_database():
    if connection.vendor != "postgresql":
        pytest.skip("the production layout is exercised in the PostgreSQL pass")
    db = connection.settings_dict
    admin_url = f"postgres://{db.get('USER') or 'postgres'}@{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}/postgres"
    name = f"trifecta_run_{os.getpid()}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_run_uses_redis_url_and_database_url_when_given(tmp_path, fresh_postgres_database):
    env = base_env(tmp_path)
    env.update(DATABASE_URL=fresh_postgres_database, REDIS_URL=settings.REDIS_URL, DJANGO_SUPERUSER_PASSWORD="")
    desk = exercise_desk(env, "postgresql")
    assert "Starting the bundled Redis" not in desk.output
    assert not (tmp_path / "var" / "trifecta.sqlite3").exists()


# --- out of the box: live data when a venue answers, else the demo -------------------------

def fresh_copy(tmp_path: Path) -> Path:
    """The project as a fresh clone has it (the working tree's tracked and new files), with
    no var/ and no ../shared beside it."""
    listed = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=processes.ROOT,
                            capture_output=True, text=True, check=True).stdout.splitlines()
    copy = tmp_path / "clone" / "trifecta"
    for name in listed:
        source = processes.ROOT / name
        if source.is_file() and not name.startswith(("var/", ".venv/")):
            target = copy / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read_bytes())
    assert not (copy.parent / "shared").exists()
    return copy


def bare_env(**extra) -> dict:
    """What a user's shell gives `make run`: no TRIFECTA_*, DATABASE_URL, REDIS_URL or CCXT_* settings."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG", "TMPDIR") if name in os.environ}
    env.update(extra)
    return env


class Api:
    def __init__(self, base: str, token: str):
        self.base, self.session = base, requests.Session()
        self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str):
        response = self.session.get(self.base + path, timeout=10)
        assert response.status_code == 200, (path, response.status_code, response.text[:300])
        return response.json()

    def results(self, path: str) -> list:
        return self.get(path)["results"]


def token_for(copy: Path, env: dict, username: str = "admin") -> str:
    done = subprocess.run([sys.executable, "manage.py", "drf_create_token", username], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return re.search(r"Generated token (\S+)", done.stdout).group(1)


def wait_until(what: str, probe, timeout_s: float, desk: RunningDesk, every_s: float = 2):
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        assert desk.process.poll() is None, desk.output[-4000:]
        time.sleep(every_s)
    raise AssertionError(f"{what} not within {timeout_s:.0f} s (last: {last!r})\n{desk.output[-4000:]}")


def stop_desk(desk: RunningDesk) -> None:
    desk.process.send_signal(signal.SIGINT)
    try:
        desk.process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(desk.process.pid, signal.SIGKILL)


def test_a_fresh_copy_with_nothing_set_and_no_network_runs_the_demo_and_trades_on_it(tmp_path):
    """`make run` on a clone with no environment and no network: within 2 minutes the demo's
    opportunities of two kinds are found and decided; auto-execute on through the API gives
    a closed paper trade within the first ten minutes (usually within one more)."""
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is exercised in the SQLite pass")
    copy = fresh_copy(tmp_path)
    env = bare_env()
    port = embedded.free_port()
    started = time.monotonic()
    desk = RunningDesk(env, port, cwd=copy)
    try:
        desk.wait_for(r"Log in as 'admin' with password: \S+", 120)
        assert "Data: DEMO" in desk.output and "no live venue answered" in desk.output, desk.output
        assert "TRIFECTA_FEED=ccxt" in desk.output  # how to switch
        api = Api(f"http://127.0.0.1:{port}", token_for(copy, env))

        seen = {}

        def decided_kinds():
            for kind in ("arbitrage", "forex", "binary"):
                seen[kind] = [o["status"] for o in api.results(f"/api/opportunities/?kind={kind}")]
            kinds = {kind for kind, statuses in seen.items() if any(s != "detected" for s in statuses)}
            if len(kinds) < 2:
                print("so far:", {k: len(v) for k, v in seen.items()}, [(r["kind"], r["market_ts"], r["skipped"]) for r in api.results("/api/scans/")][:6])
            return kinds if len(kinds) >= 2 else None

        kinds = wait_until("opportunities of two kinds, decided", decided_kinds, 120 - (time.monotonic() - started), desk)
        assert api.results("/api/decisions/"), "decisions listed"
        assert api.get("/api/health/")["checks"]["feeds"]["feed"] == "replay"

        switched = api.session.patch(api.base + "/api/controls/", json={"auto_execute": True}, timeout=10)
        assert switched.status_code == 200 and switched.json()["auto_execute"] is True, switched.text
        switched_at = time.monotonic()
        try:
            # Usually within 2 minutes; a 60 s option that clears the auto thresholds comes in windows of
            # 10-15 s of market time, which the scans (every 25 s of it at the demo's pace) can miss for a while.
            # On a machine this busy (the suite's four processes on two cores), the desk's own latency at the
            # demo's 5x pace makes many of them STALE_DATA at the governor, as it should: it can take minutes.
            closed = wait_until("a closed paper trade", lambda: api.results("/api/trades/?status=closed"), 420, desk)
        except AssertionError:
            verdicts = [(o["kind"], o["market_ts"], [(d["layer"], d["verdict"], d["reasons"]) for d in o["decisions"]])
                        for o in api.results("/api/opportunities/")]
            print("no closed trade; opportunities:", verdicts, "trades:", api.results("/api/trades/"))
            raise
        print(f"demo: decided kinds {sorted(kinds)}; first closed trade {closed[0]['kind']} {closed[0]['symbol']} "
              f"{time.monotonic() - switched_at:.0f} s after auto-execute went on")
    finally:
        stop_desk(desk)
    for quiet in ("FeedError", "scanners/feeds", "monitor_positions raised"):  # a down feed is a line, not a traceback
        assert quiet not in desk.output, desk.output[max(0, desk.output.find(quiet) - 2000):][:4000]


def test_with_nothing_set_the_run_goes_live_when_a_venue_answers(tmp_path):
    """The live-first path, against the local venue server standing in for binance and kraken."""
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is exercised in the SQLite pass")
    from tests.venue_server import VenueServer
    from tests.conftest import FIXTURES

    with VenueServer(FIXTURES / "recordings" / "two-venues", clock=1700000000000 + 20_000, timeout_s=5) as server:
        urls = ",".join(f"{venue}={url}" for venue, url in server.urls().items())
        env = bare_env(TRIFECTA_VAR_DIR=str(tmp_path / "var"), CCXT_URLS=urls, CELERY_CONCURRENCY="1")
        port = embedded.free_port()
        desk = RunningDesk(env, port)
        try:
            desk.wait_for(r"Log in as 'admin' with password: \S+", 120)
            assert "Data: LIVE public market data" in desk.output and "binance, kraken answered" in desk.output, desk.output
            def live_feeds():
                try:
                    feeds = requests.get(f"http://127.0.0.1:{port}/api/health/", timeout=5).json()["checks"]["feeds"]
                except (requests.RequestException, ValueError, KeyError):
                    return None  # the web process is still starting
                venues = feeds.get("venues", {})
                return feeds if venues.keys() == {"binance", "kraken"} and all(v["status"] == "ok" for v in venues.values()) else None

            assert wait_until("both venues ok in health", live_feeds, 90, desk)["feed"] == "ccxt"
        finally:
            stop_desk(desk)


def test_a_feed_that_is_down_logs_one_line_not_a_traceback_per_tick(tmp_path):
    """The issue's first ten minutes: replay with no recording used to print a traceback every 2 s."""
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default is exercised in the SQLite pass")
    env = bare_env(TRIFECTA_VAR_DIR=str(tmp_path / "var"), TRIFECTA_FEED="replay", TRIFECTA_RECORDING="", CELERY_CONCURRENCY="1")
    port = embedded.free_port()
    desk = RunningDesk(env, port)
    try:
        desk.wait_for(r"Log in as 'admin' with password: \S+", 120)
        assert "Data: none. TRIFECTA_FEED=replay needs TRIFECTA_RECORDING" in desk.output
        desk.wait_for(r"feed replay: \* is down", 60)
        desk.wait_for(r"monitor_positions cannot run", 30)
        time.sleep(20)  # ten monitor ticks, four polls, two to four scans of each kind
    finally:
        stop_desk(desk)
    output = desk.output
    assert output.count("feed replay: * is down") == 1, output[-4000:]
    assert output.count("monitor_positions cannot run") == 1
    for kind in ("arbitrage", "forex", "binary"):
        assert output.count(f"{kind} scan cannot run") <= 1
    for noisy in ("monitor_positions raised", "FeedError(", "/scanners/", "/execution/"):
        assert noisy not in output, output[max(0, output.find(noisy) - 2000):][:4000]
