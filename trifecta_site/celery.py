"""The Celery app shared by the worker(s) and beat."""
import gc
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")

app = Celery("trifecta_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_process_init.connect
def freeze_startup_objects(**_signal):
    """What a worker process imported and set up at start lives as long as the process: keep it
    out of the garbage collector's full passes, which paused decisions by several ms at p99
    (`make bench-decide`)."""
    gc.freeze()
