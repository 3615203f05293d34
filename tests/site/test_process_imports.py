"""Desk workers never import ccxt: only the scan worker's feeds do (memory, start-up time)."""
import subprocess
import sys

from django.conf import settings


def test_loading_every_task_module_does_not_import_ccxt():
    code = (
        "import django, sys; django.setup();"
        "from trifecta_site.celery import app; app.loader.import_default_modules();"
        "import scanners.tasks, trifecta_site.tasks;"
        "print('ccxt' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=settings.BASE_DIR,
        env={"DJANGO_SETTINGS_MODULE": "trifecta_site.settings", "PATH": "/usr/bin:/bin",
             "TRIFECTA_VAR_DIR": str(settings.VAR_DIR), "REDIS_URL": settings.REDIS_URL},
    )
    assert out.stdout.strip() == "False", out.stderr
