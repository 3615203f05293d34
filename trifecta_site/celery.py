"""The Celery app shared by the worker(s) and beat."""
import gc
import logging
import os
import signal

from billiard.compat import mem_rss
from celery import Celery
from celery.concurrency.solo import TaskPool as SoloPool
from celery.signals import task_postrun, task_prerun, worker_process_init, worker_ready
from django.db import connections

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")

app = Celery("trifecta_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

logger = logging.getLogger(__name__)
_solo_memory_limit_kb = 0


@worker_process_init.connect
def freeze_startup_objects(**_signal):
    """What a worker process set up at start lives as long as the process: kept out of the
    garbage collector's full passes, which otherwise pause a task at random."""
    gc.freeze()


@worker_ready.connect
def set_up_solo_worker(sender, **_signal):
    """A solo worker runs its tasks in its own process: it freezes its startup objects as a
    prefork child does, and gets the memory limit that Celery's `worker_max_memory_per_child`
    (a prefork setting) does not apply to it. Not on Windows, whose one solo worker
    (`manage.py run`) nothing would start again."""
    global _solo_memory_limit_kb
    if isinstance(sender.pool, SoloPool):
        freeze_startup_objects()
        if os.name != "nt":
            _solo_memory_limit_kb = app.conf.worker_max_memory_per_child or 0


@task_prerun.connect
@task_postrun.connect
def renew_database_connections(**_signal):
    """Before and after every task, what Django does around every request: a connection left
    unusable is dropped, one older than CONN_MAX_AGE closed. Celery's fixup renews them only by
    count, so under load every worker renewed at once and the next tasks met a cold server
    backend. Connections kept for no time (SQLite) are left to that count."""
    for conn in connections.all(initialized_only=True):
        if conn.settings_dict["CONN_MAX_AGE"] != 0:
            conn.close_if_unusable_or_obsolete()


@task_postrun.connect
def stop_solo_worker_above_memory_limit(**_signal):
    """After the task (its message is acknowledged as usual), a warm shutdown: the worker exits
    with code 0 and its supervisor starts a fresh one, as prefork replaces a child."""
    if _solo_memory_limit_kb and (used_kb := mem_rss()) > _solo_memory_limit_kb:
        logger.warning("solo worker at %d KB, above CELERY_MAX_MEMORY_PER_CHILD_KB=%d: stopping after this task",
                       used_kb, _solo_memory_limit_kb)
        os.kill(os.getpid(), signal.SIGTERM)
