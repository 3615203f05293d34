import inspect
import os
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.test import override_settings

ROOT = Path(__file__).resolve().parent.parent
SHARED_RECORDINGS = ROOT.parent / "shared" / "recordings"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


def shared_recordings() -> list[Path]:
    """Every real recording in ../shared/recordings (empty where ../shared is absent)."""
    if not SHARED_RECORDINGS.is_dir():
        return []
    return sorted(p for p in SHARED_RECORDINGS.iterdir() if (p / "manifest.json").is_file())


def shared_recording(name: str) -> Path:
    path = SHARED_RECORDINGS / name
    if not (path / "manifest.json").is_file():
        pytest.skip(f"../shared/recordings/{name} is absent (real recordings live outside the repository)")
    return path


# What makes a test's behaviour depend on the database or the broker, and so worth running
# again on PostgreSQL and the machine's Redis: pytest-django's database access (the
# `django_db` mark or a fixture that needs `db`/`transactional_db`), the fixtures that start
# desk processes or talk to Redis, and a test module that imports a Redis or kombu client.
DATABASE_FIXTURES = {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback",
                     "live_server", "django_db_setup"}
BACKEND_FIXTURES = {"desk", "worker", "redis_server", "launched", "desk_queue"}
BROKER_CLIENTS = ("redis", "kombu", "channels.layers")


def talks_to_the_broker(module) -> bool:
    """Whether a test module imports a Redis, kombu or channel-layer client (a module or a name from one)."""
    for value in vars(module).values() if module is not None else ():
        origin = value.__name__ if inspect.ismodule(value) else getattr(value, "__module__", None)
        if isinstance(origin, str) and any(origin == client or origin.startswith(client + ".") for client in BROKER_CLIENTS):
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Mark `backend` every test whose behaviour depends on the database or the broker (the
    PostgreSQL pass of `make test` runs only those: `-m "backend and not reliability"`).

    A `replay_database` test is not: a replay always runs on its own in-memory SQLite (replay
    settings), so on PostgreSQL it would only test a combination the desk never runs."""
    backend = pytest.mark.backend
    for item in items:
        if item.get_closest_marker("replay_database"):
            continue
        fixtures = set(getattr(item, "fixturenames", ()))
        if (item.get_closest_marker("django_db") or item.get_closest_marker("integration")
                or fixtures & (DATABASE_FIXTURES | BACKEND_FIXTURES)
                or talks_to_the_broker(getattr(item, "module", None))):
            item.add_marker(backend)


requires_shared = pytest.mark.skipif(
    not SHARED_RECORDINGS.is_dir(), reason="../shared/recordings is absent: real recordings live outside the repository"
)


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """A test database of this run's own (named with its process id), so two runs at once on
    one machine (`make test` beside a targeted run) never create or drop each other's."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    test = database.setdefault("TEST", {})
    if database["ENGINE"].endswith("sqlite3"):
        if test.get("NAME"):  # a file (settings: every desk process opens the same one); in memory stays in memory
            name = Path(test["NAME"])
            test["NAME"] = str(name.with_name(f"{name.stem}-{os.getpid()}{name.suffix}"))
    else:
        test["NAME"] = f"{test.get('NAME') or 'test_' + database['NAME']}_{os.getpid()}"


class OneRoundPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    """Django's default hasher at one round: the tests make and check hundreds of passwords,
    at about a quarter of a CPU second each at the default rounds. Its hashes name their
    rounds, so the desk processes a test starts (default settings) check them as they are."""

    iterations = 1


@pytest.fixture(scope="session", autouse=True)
def quick_password_hashing():
    with override_settings(PASSWORD_HASHERS=[f"{__name__}.OneRoundPBKDF2PasswordHasher",
                                             "django.contrib.auth.hashers.PBKDF2PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def fresh_process_memory():
    """Each test starts with scanners that remember nothing of another test's scans, no kept
    configuration rows (a test's database is emptied without the saves that replace their
    version) and no kept list counts."""
    from scanners.services import forget_scan_state
    from trifecta_site.pagination import forget_counts
    from trifecta_site.models import forget_settings

    for forget in (forget_scan_state, forget_settings, forget_counts):
        forget()
    yield
    for forget in (forget_scan_state, forget_settings, forget_counts):
        forget()
