"""One way to tell the world about a state change: `publish(kind, data)`.

Events go to the channel layer group of their kind; every WebSocket client subscribed
to that kind, on any web process, receives `{"type", "ts", "data"}`. Publishing never
breaks the caller: if the channel layer is away the event is logged and dropped (the
database remains the record). Callers inside a transaction publish from
`transaction.on_commit`, so a rolled-back change is never announced.
"""
import logging
import time

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

KINDS = ("opportunity", "decision", "trade", "position", "stats", "feed", "controls")


def group_name(kind: str) -> str:
    return f"events.{kind}"


def make_event(kind: str, data: dict) -> dict:
    return {"type": kind, "ts": time.time_ns() // 1_000_000, "data": data}


def publish(kind: str, data: dict) -> bool:
    """Send one event; returns False (and logs) when the channel layer is unreachable."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(KINDS)}")
    layer = get_channel_layer()
    try:
        async_to_sync(layer.group_send)(group_name(kind), {"type": "stream.event", "event": make_event(kind, data)})
    except Exception:
        logger.warning("event %s not published: channel layer unreachable", kind, exc_info=True)
        return False
    return True
