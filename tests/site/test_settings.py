"""Settings that matter for several processes sharing one desk."""
import pytest
from django.conf import settings
from django.db import connection

from trifecta_site.celery import app


def test_tasks_are_routed_to_their_queues():
    router = app.amqp.router
    assert router.route({}, "scanners.tasks.poll_feeds")["queue"].name == "scan"
    assert router.route({}, "trifecta_site.tasks.heartbeat")["queue"].name == "desk"


def test_workers_reuse_connections_and_are_recycled_by_memory():
    assert app.conf.get("CELERY_DB_REUSE_MAX") == settings.CELERY_DB_REUSE_MAX > 0
    assert app.conf.worker_max_memory_per_child > 0
    assert app.conf.task_acks_late and app.conf.task_reject_on_worker_lost


@pytest.mark.django_db(transaction=True)
def test_around_a_task_a_connection_past_conn_max_age_or_broken_is_renewed():
    """PostgreSQL: by age and after an error, not every CELERY_DB_REUSE_MAX tasks; SQLite (kept
    for no time by web requests): kept for those tasks."""
    import time

    from celery.signals import task_postrun, task_prerun

    connection.close()  # not the one an earlier test's request closed inside its transaction (Django keeps that object)
    connection.ensure_connection()
    kept = connection.connection
    task_prerun.send(sender=None)
    task_postrun.send(sender=None)
    assert connection.connection is kept
    connection.close_at = time.monotonic() - 1
    task_postrun.send(sender=None)
    renews = connection.settings_dict["CONN_MAX_AGE"] != 0
    assert (connection.connection is None) if renews else (connection.connection is kept)
    if renews:
        connection.ensure_connection()
        connection.connection.close()  # the server went away
        connection.errors_occurred = True
        task_prerun.send(sender=None)
        assert connection.connection is None
        assert connection.cursor().execute("SELECT 1") is not None  # and the next query has a connection


def test_channel_layer_pool_is_sized_beyond_redis_py_default():
    host = settings.CHANNEL_LAYERS["default"]["CONFIG"]["hosts"][0]
    assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels_redis.pubsub.RedisPubSubChannelLayer"
    assert host["max_connections"] >= 400


def test_api_is_closed_by_default():
    assert settings.REST_FRAMEWORK["DEFAULT_PERMISSION_CLASSES"] == ["rest_framework.permissions.IsAuthenticated"]


@pytest.mark.django_db
def test_sqlite_is_set_up_for_several_writers():
    if connection.vendor != "sqlite":
        pytest.skip("SQLite settings apply to the embedded default only")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


def test_check_deploy_is_clean_with_the_production_settings_readme_documents():
    """README's production environment (TLS proxy, secure cookies, HSTS) passes `check --deploy`."""
    import os
    import subprocess
    import sys

    from ..conftest import ROOT

    env = {**{k: v for k, v in os.environ.items() if k not in ("DEBUG",)},
           "DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "DEBUG": "false",
           "SECRET_KEY": "a-production-secret-key-of-sufficient-length-and-variety-0123456789-!@#$%",
           "ALLOWED_HOSTS": "desk.example.com", "CSRF_TRUSTED_ORIGINS": "https://desk.example.com",
           "SECURE_COOKIES": "true", "SECURE_SSL_REDIRECT": "true", "SECURE_HSTS_SECONDS": "31536000"}
    result = subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
