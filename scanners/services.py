"""Services of the scan side: polling feeds and keeping their status in the database."""
from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime, timezone as dt_timezone

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from trifecta_site import events

from .feeds.base import DOWN, Feed, FeedStatus
from .models import FeedState

logger = logging.getLogger(__name__)


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=dt_timezone.utc)


@contextmanager
def exclusive(name: str, *, ttl_s: int):
    """Yields True for the one holder of `name` across all workers, False for the others.

    Used so a scan or poll that overlaps its predecessor is skipped, not stacked; the
    ttl frees the name if the holder dies.
    """
    key = f"trifecta:running:{name}"
    try:
        acquired = cache.add(key, 1, timeout=ttl_s)
    except Exception:
        logger.warning("lock store unreachable; running %s without overlap protection", name)
        acquired = True
    try:
        yield acquired
    finally:
        if acquired:
            try:
                cache.delete(key)
            except Exception:
                logger.warning("could not release %s", name)


def record_feed_status(*, feed_name: str, statuses: list[FeedStatus]) -> list[FeedState]:
    """Store each venue's status; publish a `feed` event for every venue whose state changed."""
    now = timezone.now()
    changed = []
    rows = []
    with transaction.atomic():
        existing = {row.venue: row for row in FeedState.objects.filter(feed=feed_name)}
        for status in statuses:
            row = existing.get(status.venue) or FeedState(feed=feed_name, venue=status.venue)
            if row.state != status.state:
                changed.append(status)
            row.state = status.state
            row.detail = status.detail[:500]
            row.last_error = status.last_error[:500]
            row.error_at = ms_to_datetime(status.error_at)
            row.last_ok_at = ms_to_datetime(status.last_ok_at)
            row.updated_at = now
            row.save()
            rows.append(row)
        for status in changed:
            data = {"feed": feed_name, **status.as_dict()}
            transaction.on_commit(lambda data=data: events.publish("feed", data))
    return rows


def poll_feed(*, feed: Feed) -> list[FeedState]:
    """Refresh a feed and store what it says about each venue.

    A feed that raises is recorded as down for every venue it knows, with the reason;
    the desk goes on.
    """
    try:
        feed.refresh()
        statuses = feed.status()
    except Exception as exc:
        logger.exception("feed %s failed to refresh", feed.name)
        statuses = [
            FeedStatus(venue=name, state=DOWN, last_error=f"{type(exc).__name__}: {exc}")
            for name in _known_venues(feed)
        ]
    return record_feed_status(feed_name=feed.name, statuses=statuses)


def _known_venues(feed: Feed) -> list[str]:
    try:
        return sorted(feed.venues())
    except Exception:
        return [feed.name]


def poll_configured_feed() -> list[FeedState]:
    """Poll the feed the settings name; a feed that cannot even be built is recorded down."""
    from django.conf import settings

    from .feeds import current_feed

    try:
        feed = current_feed()
    except Exception as exc:
        logger.exception("feed %s cannot start", settings.TRIFECTA_FEED)
        status = FeedStatus(venue="*", state=DOWN, last_error=f"{type(exc).__name__}: {exc}")
        return record_feed_status(feed_name=settings.TRIFECTA_FEED, statuses=[status])
    return poll_feed(feed=feed)
