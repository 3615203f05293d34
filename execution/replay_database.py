"""The in-memory database a replay runs on, migrated once per set of migrations and copied after."""
import hashlib
import os
import sqlite3
import tempfile
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connection


def schema_file() -> Path:
    """Where the migrated empty database of the installed apps' migrations is kept (named by their files)."""
    files = sorted(p for app in apps.get_app_configs() for p in Path(app.path).glob("migrations/*.py"))
    digest = hashlib.sha256("".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}\n" for p in files).encode()).hexdigest()
    return Path(settings.VAR_DIR) / "replay" / f"schema-{digest[:16]}.sqlite3"


def migrated_database() -> None:
    """The in-memory database, migrated: copied from the kept empty database when there is one
    (migrating costs most of a short replay), else migrated here and kept for the next run."""
    connection.ensure_connection()
    kept = schema_file()
    if kept.is_file():
        with sqlite3.connect(kept) as source:
            source.backup(connection.connection)
        return
    call_command("migrate", verbosity=0, interactive=False)
    kept.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=kept.parent, suffix=".partial")
    os.close(fd)
    with sqlite3.connect(partial) as target:
        connection.connection.backup(target)
    os.replace(partial, kept)  # whole or not at all: replays starting meanwhile migrate for themselves
