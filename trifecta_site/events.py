"""One way to tell the world about a state change: `publish(kind, data)`.

Events go to the channel layer group of their kind; every WebSocket client subscribed
to that kind, on any web process, receives `{"type", "ts", "data"}`. Publishing never
breaks the caller: if the channel layer is away the event is logged and dropped (the
database remains the record); a process with no channel layer (a replay) publishes
nothing. Callers inside a transaction publish from
`transaction.on_commit`, so a rolled-back change is never announced.

Sync callers (workers, services) send through one event loop per process, kept running
in a thread: the channel layer's Redis connection is reused instead of being opened for
every event, as a fresh `async_to_sync` loop would do.
"""
import asyncio
import logging
import os
import threading
import time

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

KINDS = ("opportunity", "decision", "trade", "position", "stats", "feed", "controls")
SEND_TIMEOUT_S = 5

_loop_lock = threading.Lock()
_loop: asyncio.AbstractEventLoop | None = None
_loop_pid: int | None = None


def group_name(kind: str) -> str:
    return f"events.{kind}"


def make_event(kind: str, data: dict) -> dict:
    return {"type": kind, "ts": time.time_ns() // 1_000_000, "data": data}


def _sender_loop() -> asyncio.AbstractEventLoop:
    """This process's sending loop (a forked child starts its own: the parent's thread did not survive the fork)."""
    global _loop, _loop_pid
    with _loop_lock:
        if _loop is None or _loop_pid != os.getpid() or _loop.is_closed():
            _loop, _loop_pid = asyncio.new_event_loop(), os.getpid()
            threading.Thread(target=_loop.run_forever, name="trifecta-events", daemon=True).start()
        return _loop


def publish(kind: str, data: dict) -> bool:
    """Send one event; returns False (and logs) when the channel layer is unreachable."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(KINDS)}")
    layer = get_channel_layer()
    if layer is None:  # no channel layer configured (a replay's own process): nobody to tell
        return False
    message = {"type": "stream.event", "event": make_event(kind, data)}
    try:
        asyncio.run_coroutine_threadsafe(layer.group_send(group_name(kind), message), _sender_loop()).result(SEND_TIMEOUT_S)
    except Exception:
        logger.warning("event %s not published: channel layer unreachable", kind, exc_info=True)
        return False
    return True
