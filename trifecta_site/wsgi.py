"""WSGI entry point of the production web tier's HTTP side (pages, admin, API, static files
served by the app itself); the WebSocket stream is the ASGI application's (`asgi.py`)."""
import os

from django.contrib.staticfiles.handlers import StaticFilesHandler
from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")
application = StaticFilesHandler(get_wsgi_application())
