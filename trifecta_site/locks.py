"""One holder at a time across every worker, through the shared cache."""
from __future__ import annotations

import logging
from contextlib import contextmanager

from django.core.cache import cache

logger = logging.getLogger(__name__)


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
