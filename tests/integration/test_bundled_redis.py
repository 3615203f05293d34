"""`manage.py run`'s bundled Redis, as another account on the machine meets it (issue 31,
finding 1): it listens on loopback only, refuses a client without the password the run
command generated (kept in var/, 0600, handed to the desk's processes in REDIS_URL), and
refuses CONFIG SET, SAVE and the other file- or code-loading commands even with it. The
desk itself still works through it (health green: web, worker and beat all reach it)."""
import io
import os
import re
import socket
import stat
from pathlib import Path

import pytest
import redis
from django.db import connection

from trifecta_site import embedded
from trifecta_site.management.commands.run import Command

from .test_run_command import RunningDesk, base_env, stop_desk

pytestmark = [pytest.mark.integration, pytest.mark.django_db]


def listening_addresses(port: int) -> set[str]:
    """Local addresses a TCP socket on `port` listens on (Linux /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        path = Path(table)
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, port_hex = fields[1].rsplit(":", 1)
            if int(port_hex, 16) == port and fields[3] == "0A":  # LISTEN
                found.add(address)
    return found


def test_the_bundled_redis_refuses_clients_without_the_password_and_config_set_with_it(tmp_path):
    if connection.vendor != "sqlite":
        pytest.skip("the embedded default (bundled Redis) is exercised in the SQLite pass")
    env = base_env(tmp_path)
    desk = RunningDesk(env, embedded.free_port())
    try:
        desk.wait_for(r"Starting the bundled Redis on 127\.0\.0\.1:(\d+)", 120)
        health = desk.wait_healthy(180)
        # the last port tried is the one serving (an earlier one may have been taken meanwhile)
        port = int(re.findall(r"Starting the bundled Redis on 127\.0\.0\.1:(\d+)", desk.output)[-1])
        assert health["checks"]["broker"]["status"] == "ok" and health["checks"]["worker"]["status"] == "ok"

        if Path("/proc/net/tcp").exists():
            assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1 only

        anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
        for attempt in (anonymous.ping, lambda: anonymous.publish("trifecta.events.controls", '{"forged": true}'),
                        lambda: anonymous.execute_command("CONFIG", "SET", "dir", str(tmp_path))):
            with pytest.raises(redis.AuthenticationError):
                attempt()

        password_file = tmp_path / "var" / "redis_password"
        assert stat.S_IMODE(password_file.stat().st_mode) == 0o600
        password = password_file.read_text().strip()
        assert len(password) >= 32 and password not in desk.output
        client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)
        assert client.ping()
        with pytest.raises(redis.ResponseError, match="unknown command"):
            client.execute_command("CONFIG", "SET", "dir", str(tmp_path))
        for command in (("CONFIG", "GET", "requirepass"), ("SAVE",), ("BGSAVE",), ("DEBUG", "SLEEP", "0"),
                        ("MODULE", "LIST"), ("REPLICAOF", "127.0.0.1", "1"), ("SLAVEOF", "127.0.0.1", "1")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
        assert not list(tmp_path.glob("*.rdb"))

        var = tmp_path / "var"
        assert stat.S_IMODE(var.stat().st_mode) == 0o700
        loose = [f"{p.relative_to(var)} {oct(stat.S_IMODE(p.stat().st_mode))}" for p in var.rglob("*")
                 if p.is_file() and not p.is_relative_to(var / "static") and stat.S_IMODE(p.stat().st_mode) & 0o077]
        assert loose == []  # database, its WAL, secret key, Redis password, config and log
        for name in ("trifecta.sqlite3", "secret_key", "redis_password", "redis/redis.conf"):
            assert (var / name).exists(), name
        cmdlines = b"\0".join(_command_lines())
        assert password.encode() not in cmdlines  # `ps` shows every account the command lines
    finally:
        stop_desk(desk)
    assert desk.process.returncode == 0, desk.output[-4000:]
    assert re.search(r"Desk stopped\.", desk.output)


def _command_lines() -> list[bytes]:
    """Every process's command line, as `ps` shows them to any account."""
    lines = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                lines.append((entry / "cmdline").read_bytes())
            except OSError:
                continue  # gone meanwhile
    return lines


def test_a_bundled_redis_port_taken_between_the_check_and_the_bind_is_retried_on_another(tmp_path, monkeypatch, settings):
    """Two desks starting at once both find 6390 free; the one whose server loses the bind
    starts its own on another port rather than failing (or sharing the other's)."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        taken_port = taken.getsockname()[1]
        offered = iter([taken_port])
        free_port = embedded.free_port
        monkeypatch.setattr(embedded, "free_port", lambda preferred=None: next(offered, None) or free_port())
        settings.VAR_DIR = tmp_path
        command = Command(stdout=io.StringIO())
        command.children = []
        env = dict(os.environ)
        try:
            command.start_bundled_redis(env)
            url = redis.Redis.from_url(env["REDIS_URL"])
            assert url.connection_pool.connection_kwargs["port"] != taken_port
            assert url.ping()
            assert command.stdout.getvalue().count("Starting the bundled Redis") == 2
        finally:
            embedded.stop(command.children)
