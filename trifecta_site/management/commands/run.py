"""`manage.py run`: the whole desk in one command (web, worker, beat, and the broker
when REDIS_URL is unset). Ctrl-C stops every child and leaves no process behind."""
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from decisions.models import Controls
from scanners.models import FeedSettings, FeedState
from trifecta_site import embedded
from trifecta_site.demo import DEMO_RECORDING, demo_manifest, is_demo

PROBE_TIMEOUT_S = 4
REDIS_ATTEMPTS = 3
WEB_START_TIMEOUT_S = 120
DEMO_STARTUP_S = 20  # the demo's clock reaches its `begin` this long after the probe: when the worker scans


def describe_source(source: dict) -> list[str]:
    """The banner's words for where market data comes from and how to switch."""
    if source["kind"] == "live":
        return [f"Data: LIVE public market data from ccxt venues ({source['note']}).",
                "  Switch: TRIFECTA_FEED=replay TRIFECTA_RECORDING=DIR make run replays a recording instead."]
    if source["kind"] == "demo":
        why = f" because {source['note']}" if source["note"] else ""
        return [f"Data: DEMO, a recorded EUR/USD day (2014-05-02) replayed fast{why}.",
                "  Switch: TRIFECTA_FEED=ccxt make run for live data; TRIFECTA_FEED=replay TRIFECTA_RECORDING=DIR make run for a recording."]
    if source["feed"] == "replay" and not source["recording"]:
        return ["Data: none. TRIFECTA_FEED=replay needs TRIFECTA_RECORDING=DIR (a recording directory);",
                "  unset TRIFECTA_FEED to use live data or the demo."]
    if source["feed"] == "replay":
        return [f"Data: REPLAY of {source['recording']} (TRIFECTA_REPLAY_SPEED={os.environ.get('TRIFECTA_REPLAY_SPEED', '1')}).",
                "  Switch: unset TRIFECTA_FEED and TRIFECTA_RECORDING for live data (or the demo when offline)."]
    return [f"Data: {source['feed']} feed (TRIFECTA_FEED). Unset it for live ccxt data, or the demo when offline."]


class Command(BaseCommand):
    help = "Start the whole desk: ASGI web server, Celery worker (scan, desk, notify and replay queues) and Celery beat."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("TRIFECTA_HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("TRIFECTA_PORT", "8000")))
        parser.add_argument(
            "--concurrency", type=int, default=int(os.environ.get("CELERY_CONCURRENCY", "2")),
            help="worker processes serving both queues (default 2)",
        )

    def handle(self, *args, host, port, concurrency, **options):
        self.children = []
        self.stopping = False
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)
        env = dict(os.environ)
        env.setdefault("TRIFECTA_REPLAY_ANCHOR_MS", str(time.time_ns() // 1_000_000))
        env["PYTHONUNBUFFERED"] = "1"
        try:
            os.umask(0o077)  # what the desk writes (database, logs, Redis files) is this account's alone
            embedded.owner_only_directory(settings.VAR_DIR)
            if settings.EMBEDDED_REDIS:
                self.start_bundled_redis(env)
            call_command("migrate", interactive=False, verbosity=0)
            login = self.ensure_superuser()
            source = self.choose_data(env)
            FeedState.objects.all().delete()  # the previous run's venues: this run's poll writes its own
            self.start_children(env, host=host, port=port, concurrency=concurrency)
            self.wait_for_web(host, port)
            self.announce(host, port, login, source)
            return self.supervise()
        except (RuntimeError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self.shutdown()

    def start_bundled_redis(self, env: dict) -> None:
        """The bundled Redis on 6390, or on a free port when another desk took that one
        between our check and the server's bind (a second attempt, never a shared server)."""
        # A password kept in var/ (0600): no other account on the machine can drive it.
        password = embedded.owner_only_file(settings.VAR_DIR / "redis_password")
        for attempt in range(REDIS_ATTEMPTS):
            redis_port = embedded.free_port(6390 if attempt == 0 else None)
            self.stdout.write(f"Starting the bundled Redis on 127.0.0.1:{redis_port} …")
            self.stdout.flush()
            try:
                self.children.append(embedded.start_redis(
                    directory=settings.VAR_DIR / "redis", port=redis_port, env=env, password=password))
                break
            except embedded.RedisExited:
                if attempt == REDIS_ATTEMPTS - 1:
                    raise
        env["REDIS_URL"] = embedded.redis_url(redis_port, password)
        env["TRIFECTA_EMBEDDED_REDIS"] = "1"

    def wait_for_web(self, host: str, port: int) -> None:
        """The addresses are announced only once the web server accepts connections."""
        address = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        deadline = time.monotonic() + WEB_START_TIMEOUT_S
        while time.monotonic() < deadline and not self.stopping:
            for child in self.children:
                if child.poll() is not None:
                    raise CommandError(f"{child.trifecta_name} exited with code {child.returncode} while the desk started")
            try:
                with socket.create_connection((address, port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        if not self.stopping:
            raise CommandError(f"the web server did not accept connections on {address}:{port} within {WEB_START_TIMEOUT_S} s")

    def choose_data(self, env: dict) -> dict:
        """Which market data this run uses, written into the children's environment.

        Set TRIFECTA_FEED or TRIFECTA_RECORDING and that is used as it is. With neither,
        the default venues are asked for live public data for a few seconds; when none
        answers, the demo recording shipped with the desk is replayed, paced by its
        manifest (`demo.speed`, simulated seconds a second, from `demo.begin`).
        """
        if "TRIFECTA_FEED" in os.environ or "TRIFECTA_RECORDING" in os.environ:
            feed = env.get("TRIFECTA_FEED", settings.TRIFECTA_FEED)
            recording = env.get("TRIFECTA_RECORDING", "") if feed == "replay" else ""
            source = {"feed": feed, "recording": recording, "kind": "demo" if is_demo(recording) else feed, "note": ""}
            if source["kind"] == "demo":
                self.pace_demo(env)
            return source
        venues, symbols = FeedSettings.get_solo().venue_list(), FeedSettings.get_solo().symbol_list()
        self.stdout.write(f"No TRIFECTA_FEED set: asking {', '.join(venues)} for live public data (a few seconds) …")
        self.stdout.flush()
        answers = self.probe_live(venues, symbols, env)
        live = sorted(venue for venue, answer in answers.items() if answer.get("state") == "ok")
        if live:
            env["TRIFECTA_FEED"] = "ccxt"
            env["TRIFECTA_DATA_NOTE"] = f"{', '.join(live)} answered at start"
            return {"feed": "ccxt", "recording": "", "kind": "live", "note": env["TRIFECTA_DATA_NOTE"]}
        reasons = ", ".join(f"{v}: {(a.get('detail') or a.get('state') or '').split(':')[0]}" for v, a in sorted(answers.items()))[:300]
        env.update(TRIFECTA_FEED="replay", TRIFECTA_RECORDING=str(DEMO_RECORDING),
                   TRIFECTA_DATA_NOTE=f"no live venue answered at start ({reasons or 'no answer'})")
        self.pace_demo(env)
        return {"feed": "replay", "recording": str(DEMO_RECORDING), "kind": "demo", "note": env["TRIFECTA_DATA_NOTE"]}

    def probe_live(self, venues, symbols, env) -> dict:
        """The ccxt probe in a child process (only scan workers import ccxt): {} when it fails or overruns."""
        urls = ",".join(f"{venue}={url}" for venue, url in settings.CCXT_URLS.items())
        command = [sys.executable, "-m", "scanners.feeds.exchanges", ",".join(venues), ",".join(symbols), str(PROBE_TIMEOUT_S), urls]
        try:
            done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=PROBE_TIMEOUT_S * 3 + 5)
            return json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else {}
        except (subprocess.TimeoutExpired, ValueError, IndexError, OSError):
            return {}

    @staticmethod
    def pace_demo(env: dict) -> None:
        """The demo's pace and starting point from its manifest, unless the environment sets them."""
        manifest = demo_manifest()
        pace = manifest.get("demo", {})
        speed = float(env.setdefault("TRIFECTA_REPLAY_SPEED", str(pace.get("speed", 1))))
        if "TRIFECTA_REPLAY_ANCHOR_MS" not in os.environ:  # `begin` as the processes start scanning
            ahead_ms = max(0, int(pace.get("begin", manifest["start"])) - int(manifest["start"]))
            env["TRIFECTA_REPLAY_ANCHOR_MS"] = str(time.time_ns() // 1_000_000 + DEMO_STARTUP_S * 1000 - int(ahead_ms / speed))

    def request_stop(self, signum, frame):
        self.stopping = True

    def start_children(self, env, *, host, port, concurrency):
        python = sys.executable
        worker = [
            python, "-m", "celery", "-A", "trifecta_site", "worker",
            "-Q", "scan,desk,notify,replay", "-n", "desk@%h", "--loglevel", "INFO", "--concurrency", str(concurrency),
        ]
        if os.name == "nt":
            worker += ["--pool", "solo"]
        self.children.append(embedded.spawn(worker, env=env, name="worker"))
        beat = [python, "-m", "celery", "-A", "trifecta_site", "beat", "--loglevel", "INFO"]
        self.children.append(embedded.spawn(beat, env=env, name="beat"))
        web = [
            python, "-m", "uvicorn", "trifecta_site.asgi:application",
            "--host", host, "--port", str(port), "--log-level", "warning", "--no-server-header",
        ]
        self.children.append(embedded.spawn(web, env=env, name="web"))

    def ensure_superuser(self) -> str:
        """Create an admin on first run and say its password once; later runs say who."""
        User = get_user_model()
        existing = User.objects.filter(is_superuser=True).order_by("id").first()
        if existing:
            return (
                f"Log in as '{existing.get_username()}' (password shown at first run; "
                f"change it with: python manage.py changepassword {existing.get_username()})"
            )
        username = os.environ.get("DJANGO_SUPERUSER_USERNAME", "admin")
        password = os.environ.get("DJANGO_SUPERUSER_PASSWORD") or secrets.token_urlsafe(12)
        User.objects.create_superuser(username=username, email="", password=password)
        if os.environ.get("DJANGO_SUPERUSER_PASSWORD"):
            return f"Log in as '{username}' with the password from DJANGO_SUPERUSER_PASSWORD"
        return f"Log in as '{username}' with password: {password}   (shown once; keep it)"

    def announce(self, host, port, login, source):
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown}:{port}"
        lines = [
            "",
            "Trifecta paper desk is starting (paper only: no real order is ever sent).",
            f"  Dashboard: {base}/",
            f"  Admin:     {base}/admin/",
            f"  API docs:  {base}/api/docs/   health: {base}/api/health/",
            f"  {login}",
            *(f"  {line}" for line in describe_source(source)),
            f"  Mode: {Controls.get_solo().mode} (switch auto-execute on in the dashboard, in admin: Controls, or PATCH /api/controls/)",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        self.stdout.write("\n".join(lines))
        self.stdout.flush()

    def supervise(self) -> None:
        while not self.stopping:
            for child in self.children:
                if child.poll() is not None:
                    raise CommandError(f"{child.trifecta_name} exited with code {child.returncode}; stopping the desk")
            time.sleep(0.5)
        self.stdout.write("Stopping the desk …")

    def shutdown(self):
        if not self.children:
            return
        # Web and beat first, then the worker finishes its tasks, then the broker.
        order = {"web": 0, "beat": 1, "worker": 2, "redis": 3}
        children = sorted(self.children, key=lambda c: order.get(c.trifecta_name, 9))
        embedded.stop([c for c in children if c.trifecta_name != "redis"])
        embedded.stop([c for c in children if c.trifecta_name == "redis"], grace_s=5)
        self.children = []
        self.stdout.write("Desk stopped.")
