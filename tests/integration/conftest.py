import pytest

from trifecta_site import embedded

from . import processes


@pytest.fixture
def desk(tmp_path):
    """A real web process and a real worker (both queues) on the test database and Redis."""
    env = processes.desk_env()
    port = embedded.free_port()
    web = worker = None
    try:
        web = processes.start_web(env, tmp_path / "web.log", port)
        worker = processes.start_worker(env, tmp_path / "worker.log")
        yield {"port": port, "url": f"http://127.0.0.1:{port}", "logs": tmp_path}
    finally:
        processes.stop(web, worker)
