"""WSGI entry point of the production web tier's HTTP side (pages, admin, API, static files
served by the app itself); the WebSocket stream is the ASGI application's (`asgi.py`)."""
import gc
import os
from importlib import import_module

from django.conf import settings
from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")
application = StaticFilesHandler(get_wsgi_application())
# What a web process sets up to serve (settings, apps, models, the URLs and the views they
# import) lives as long as the process: kept out of the garbage collector's full passes,
# which otherwise scan it all and pause a request at random (as desk workers do, celery.py).
import_module(settings.ROOT_URLCONF)
gc.freeze()
