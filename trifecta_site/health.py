"""What `/api/health/` reports: database, broker, worker and beat heartbeats, feeds.

Each check is `{"status": "ok" | "degraded" | "down", ...}` with nothing sensitive
in it (no hosts, no credentials, no URLs). The desk is healthy when none is down.
"""
from __future__ import annotations

import functools
from datetime import datetime

import redis
from django.conf import settings
from django.db import connection
from django.utils import timezone

from scanners.models import FeedState

from .models import Heartbeat

OK, DEGRADED, DOWN = "ok", "degraded", "down"


@functools.lru_cache(maxsize=1)
def broker_client() -> redis.Redis:
    return redis.Redis.from_url(settings.CELERY_BROKER_URL, socket_timeout=1, socket_connect_timeout=1)


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        return {"status": DOWN, "error": type(exc).__name__}
    return {"status": OK, "vendor": connection.vendor}


def check_broker() -> dict:
    try:
        broker_client().ping()
    except Exception as exc:
        return {"status": DOWN, "error": type(exc).__name__}
    return {"status": OK}


def check_heartbeat(process: str, now: datetime) -> dict:
    try:
        seen_at = Heartbeat.latest(process)
    except Exception as exc:
        return {"status": DOWN, "error": type(exc).__name__}
    if seen_at is None:
        return {"status": DOWN, "last_seen": None, "age_s": None, "detail": "no heartbeat yet"}
    age = (now - seen_at).total_seconds()
    status = OK if age <= settings.HEARTBEAT_MAX_AGE_S else DOWN
    return {"status": status, "last_seen": seen_at.isoformat(), "age_s": round(age, 1)}


def check_feeds(now: datetime) -> dict:
    """The configured feed's venues: down when every venue is down or unpolled lately."""
    try:
        rows = list(FeedState.objects.filter(feed=settings.TRIFECTA_FEED))
    except Exception as exc:
        return {"status": DOWN, "error": type(exc).__name__}
    venues = {}
    for row in rows:
        age = (now - row.updated_at).total_seconds()
        state = row.state if age <= settings.HEARTBEAT_MAX_AGE_S else DOWN
        venues[row.venue] = {
            "status": state if state in (OK, DEGRADED) else DOWN,
            "detail": row.detail if age <= settings.HEARTBEAT_MAX_AGE_S else f"not polled for {age:.0f} s",
            "last_error": row.last_error,
            "updated_at": row.updated_at.isoformat(),
        }
    if not venues:
        status = DOWN
    elif all(v["status"] == DOWN for v in venues.values()):
        status = DOWN
    elif all(v["status"] == OK for v in venues.values()):
        status = OK
    else:
        status = DEGRADED
    return {"status": status, "feed": settings.TRIFECTA_FEED, "venues": venues}


def desk_health() -> tuple[bool, dict]:
    now = timezone.now()
    checks = {
        "database": check_database(),
        "broker": check_broker(),
        "worker": check_heartbeat(Heartbeat.WORKER, now),
        "beat": check_heartbeat(Heartbeat.BEAT, now),
        "feeds": check_feeds(now),
    }
    healthy = all(check["status"] != DOWN for check in checks.values())
    return healthy, {"status": OK if healthy else DOWN, "checked_at": now.isoformat(), "checks": checks}
