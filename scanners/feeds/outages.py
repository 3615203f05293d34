"""One log line when something cannot run because its market data is away, one when it
runs again: never a line (or a traceback) per tick.

The state is kept in the shared cache, so the many worker processes that run the same
periodic task say it once between them; where the cache is away too, each process says
it once.
"""
from __future__ import annotations

import logging

logger = logging.getLogger("trifecta.outages")
_local: dict[str, str] = {}  # name -> reason, when the shared cache cannot be reached


def _key(name: str) -> str:
    return "trifecta:outage:" + name.replace(" ", "_")


def cannot_run(name: str, reason: str) -> bool:
    """Record that `name` cannot run for `reason`; True when this call logged it (the first)."""
    from django.core.cache import cache

    try:
        first = cache.add(_key(name), reason, timeout=None)
    except Exception:
        first = name not in _local
    _local[name] = reason
    if first:
        logger.warning("%s cannot run: %s (said once; a line follows when it runs again)", name, reason)
    return first


def runs_again(name: str) -> bool:
    """Record that `name` ran; True when this call ended an outage (and logged it)."""
    from django.core.cache import cache

    was_local = _local.pop(name, None) is not None
    try:
        ended = bool(cache.delete(_key(name)))
    except Exception:
        ended = was_local
    if ended:
        logger.info("%s runs again", name)
    return ended
