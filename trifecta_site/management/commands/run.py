"""`manage.py run`: the whole desk in one command (web, worker, beat, and the broker
when REDIS_URL is unset). Ctrl-C stops every child and leaves no process behind."""
import os
import secrets
import signal
import sys
import time

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError

from decisions.models import Controls
from trifecta_site import embedded


class Command(BaseCommand):
    help = "Start the whole desk: ASGI web server, Celery worker (scan + desk queues) and Celery beat."

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
            if settings.EMBEDDED_REDIS:
                redis_port = embedded.free_port(6390)
                self.stdout.write(f"Starting the bundled Redis on 127.0.0.1:{redis_port} …")
                self.children.append(
                    embedded.start_redis(directory=settings.VAR_DIR / "redis", port=redis_port, env=env)
                )
                env["REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
                env["TRIFECTA_EMBEDDED_REDIS"] = "1"
            call_command("migrate", interactive=False, verbosity=0)
            login = self.ensure_superuser()
            self.start_children(env, host=host, port=port, concurrency=concurrency)
            self.announce(host, port, login)
            return self.supervise()
        except (RuntimeError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            self.shutdown()

    def request_stop(self, signum, frame):
        self.stopping = True

    def start_children(self, env, *, host, port, concurrency):
        python = sys.executable
        worker = [
            python, "-m", "celery", "-A", "trifecta_site", "worker",
            "-Q", "scan,desk", "-n", "desk@%h", "--loglevel", "INFO", "--concurrency", str(concurrency),
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

    def announce(self, host, port, login):
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        base = f"http://{shown}:{port}"
        lines = [
            "",
            "Trifecta paper desk is starting (paper only: no real order is ever sent).",
            f"  Dashboard: {base}/",
            f"  Admin:     {base}/admin/",
            f"  API docs:  {base}/api/docs/   health: {base}/api/health/",
            f"  {login}",
            f"  Feed: {settings.TRIFECTA_FEED}"
            + (f" ({settings.TRIFECTA_RECORDING})" if settings.TRIFECTA_FEED == "replay" and settings.TRIFECTA_RECORDING else ""),
            f"  Mode: {Controls.get_solo().mode} (change it in admin: Controls)",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        if settings.TRIFECTA_FEED == "replay" and not settings.TRIFECTA_RECORDING:
            lines.insert(-2, "  No recording set: the feed stays down until TRIFECTA_RECORDING names a recording directory")
            lines.insert(-2, "  (e.g. TRIFECTA_RECORDING=../shared/recordings/fx-brokers-2014-05 make run), or set TRIFECTA_FEED=ccxt.")
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
