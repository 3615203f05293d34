"""The Celery app shared by the worker(s) and beat."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")

app = Celery("trifecta_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
