"""What each test process needs before Django's settings load: a real Redis of its own and,
under pytest-xdist, a var dir of its own; and the order xdist hands test files out in.

With REDIS_URL set (the PostgreSQL pass of `make test` points it at the machine's
Redis) that server is used; without it, the bundled redis-server that `manage.py run`
uses is started on a free port for the session and stopped at the end, so the suite
exercises the same broker and channel-layer code paths as the embedded desk.

Under pytest-xdist (`-n`, as `make test` runs), the controller runs no test and starts
nothing. Each worker has its own test database (named by its process id, tests/conftest.py),
its own var dir under TRIFECTA_VAR_DIR (what the desk keeps there is written by one process)
and its own Redis: the first worker keeps a given REDIS_URL, the others start a bundled one,
since queues live in one database of a server but its pub/sub channels (the channel layer's
events) are shared by all, and one worker's desk processes must never take another's tasks
or events.
"""
import atexit
import os
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if worker is None and getattr(early_config.known_args_namespace, "numprocesses", None):
        return  # the xdist controller: its workers set themselves up
    if worker is not None:
        var = Path(os.environ.get("TRIFECTA_VAR_DIR") or ROOT / "var") / f"xdist-{worker}"
        os.environ["TRIFECTA_VAR_DIR"] = str(var)
        if worker != "gw0":
            os.environ.pop("REDIS_URL", None)
    if os.environ.get("REDIS_URL"):
        return
    from trifecta_site import embedded

    port = embedded.free_port()
    directory = Path(tempfile.mkdtemp(prefix="trifecta-test-redis-"))
    process = embedded.start_redis(directory=directory, port=port, env=dict(os.environ))
    atexit.register(embedded.stop, [process], grace_s=5)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """Under xdist, the files that start processes (marker `integration`) go first: they hold the
    longest tests (a desk started as a user starts it runs minutes of its demo) and, handed out
    first (`make test`: `--dist load --maxschedchunk 1`, a test or two at a time, in this order),
    they run beside the rest instead of after it. A run in one process keeps pytest-django's
    order (plain database tests before those that empty the database).

    Not `--dist loadfile`: it keys tests by node id, and schemathesis's tests of every API
    operation share one under pytest 9, so it would run one operation of each and drop the rest.
    A module's process-starting fixture therefore starts once per worker that runs its tests."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    starts_processes = {item.path for item in items if item.get_closest_marker("integration")}
    items.sort(key=lambda item: item.path not in starts_processes)
