"""Settings of the process `manage.py replay` runs the desk in: the live settings with an
isolated database and no outside effects.

The replay gets a private in-memory SQLite database (migrated at start, gone at the end),
so it never reads or writes the live desk's data; it has no channel layer, so a live
dashboard never shows a replay's events; its cache and broker are in-process.
"""
from .settings import *  # noqa: F401,F403

DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
CHANNEL_LAYERS = {}
CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
CELERY_BROKER_URL = "memory://"
CELERY_BROKER_TRANSPORT = None
REPLAY_ISOLATED = True
