"""One way to tell the world about a state change: `publish(kind, data)`.

Events go to the channel layer group of their kind; every WebSocket client subscribed
to that kind, on any web process, receives `{"type", "ts", "data"}`. Publishing never
breaks the caller: if the channel layer is away the event is logged and dropped (the
database remains the record); a process with no channel layer (a replay) publishes
nothing. Callers inside a transaction publish from
`transaction.on_commit`, so a rolled-back change is never announced.

Publishing does not wait for the channel layer: `publish` puts the event on this
process's queue and returns, and one sender task (an event loop kept running in a
thread, which reuses the channel layer's Redis connection) sends them in order. A slow or
absent channel layer never slows a decision or a fill. When the queue is full (the layer
has been away for a while) new events are dropped and logged; `flush` waits for the queue
to empty and is called at exit.
"""
import asyncio
import atexit
import logging
import os
import threading
import time

import orjson
from channels.layers import get_channel_layer
from django.core.serializers.json import DjangoJSONEncoder

logger = logging.getLogger(__name__)

_DJANGO_TYPES = DjangoJSONEncoder().default  # Decimals, times, UUIDs as Django writes them
KINDS = ("opportunity", "decision", "trade", "position", "stats", "feed", "controls")
SEND_TIMEOUT_S = 5
MAX_QUEUED = 10_000

_sender_lock = threading.Lock()
_sender: "_Sender | None" = None


def group_name(kind: str) -> str:
    return f"events.{kind}"


def make_event(kind: str, data: dict) -> dict:
    return {"type": kind, "ts": time.time_ns() // 1_000_000, "data": data}


class _Sender:
    """This process's event loop thread and the queue it drains into the channel layer."""

    def __init__(self):
        self.pid, self.failed = os.getpid(), 0
        self.loop = asyncio.new_event_loop()
        self.queue: asyncio.Queue = asyncio.Queue()
        threading.Thread(target=self.loop.run_forever, name="trifecta-events", daemon=True).start()
        asyncio.run_coroutine_threadsafe(self._drain(), self.loop)

    async def _drain(self):
        while True:
            layer, kind, message = await self.queue.get()
            try:
                await asyncio.wait_for(layer.group_send(group_name(kind), message), SEND_TIMEOUT_S)
            except Exception:
                self.failed += 1
                logger.warning("event %s not published: channel layer unreachable", kind, exc_info=True)
            finally:
                self.queue.task_done()

    def put(self, item) -> bool:
        if self.queue.qsize() >= MAX_QUEUED:
            self.failed += 1
            logger.warning("event %s dropped: %d events already wait for the channel layer", item[1], MAX_QUEUED)
            return False
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        return True

    def flush(self, timeout: float) -> int:
        asyncio.run_coroutine_threadsafe(self.queue.join(), self.loop).result(timeout)
        failed, self.failed = self.failed, 0
        return failed


def _current_sender() -> _Sender:
    """This process's sender (a forked child starts its own: the parent's thread did not survive the fork)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid() or _sender.loop.is_closed():
            _sender = _Sender()
        return _sender


def publish(kind: str, data: dict) -> bool:
    """Queue one event for every subscriber of its kind; False when nothing will be sent (no channel layer, queue full)."""
    if kind not in KINDS:
        raise ValueError(f"unknown event kind {kind!r}; expected one of {', '.join(KINDS)}")
    layer = get_channel_layer()
    if layer is None:  # no channel layer configured (a replay's own process): nobody to tell
        return False
    text = orjson.dumps(make_event(kind, data), default=_DJANGO_TYPES,  # once, not once per subscriber
                        option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS).decode()
    return _current_sender().put((layer, kind, {"type": "stream.event", "text": text}))


def flush(timeout: float = SEND_TIMEOUT_S) -> int:
    """Wait until every queued event was sent or given up; how many could not be sent since the last flush."""
    if _sender is None or _sender.pid != os.getpid():
        return 0
    return _sender.flush(timeout)


@atexit.register
def _flush_at_exit():
    try:
        flush(2)
    except Exception:
        logger.warning("events still queued at exit were not sent", exc_info=True)
