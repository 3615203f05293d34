"""Gives the test run a real Redis before Django's settings load.

With REDIS_URL set (the PostgreSQL pass of `make test` points it at the machine's
Redis) that server is used; without it, the bundled redis-server that `manage.py run`
uses is started on a free port for the session and stopped at the end, so the suite
exercises the same broker and channel-layer code paths as the embedded desk.
"""
import atexit
import os
import tempfile
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config, parser, args):
    if os.environ.get("REDIS_URL"):
        return
    from trifecta_site import embedded

    port = embedded.free_port()
    directory = Path(tempfile.mkdtemp(prefix="trifecta-test-redis-"))
    process = embedded.start_redis(directory=directory, port=port, env=dict(os.environ))
    atexit.register(embedded.stop, [process], grace_s=5)
    os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
