import pytest

from trifecta_site import embedded

from . import processes


@pytest.fixture(scope="module")
def desk_processes(django_db_setup, tmp_path_factory):
    """A real web process and a real worker (both queues) on the test database and Redis,
    started once for the tests of a module that one test process runs (a start costs seconds; the
    tests reset what they share)."""
    logs = tmp_path_factory.mktemp("desk")
    env = processes.desk_env()
    port = embedded.free_port()
    web = worker = None
    try:
        web = processes.start_web(env, logs / "web.log", port)
        worker = processes.start_worker(env, logs / "worker.log")
        yield {"port": port, "url": f"http://127.0.0.1:{port}", "logs": logs, "env": env}
    finally:
        processes.stop(web, worker)


@pytest.fixture
def desk(desk_processes):
    """The module's desk, as fresh as a desk of the test's own: every process re-reads the
    configuration rows (the database was emptied since they read them), and the test ends only
    once the broker holds none of its tasks, so none runs on into the next test's rows."""
    processes.configuration_changed_everywhere()
    yield desk_processes
    processes.wait_for_idle_queues(desk_processes["env"]["REDIS_URL"])
