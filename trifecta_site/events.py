"""One way to tell the world about a state change: `publish(kind, data)`.

Events go to the channel layer group of their kind; every WebSocket client subscribed
to that kind, on any web process, receives `{"type", "ts", "data"}`. Publishing never
breaks the caller: if the channel layer is away the event is logged and dropped (the
database remains the record); a process with no channel layer (a replay) publishes
nothing. Callers inside a transaction publish from
`transaction.on_commit`, so a rolled-back change is never announced.

Publishing does not wait for the channel layer: `publish` puts the event on this
process's queue and returns, and one sender thread sends whatever has queued up, in
order, through the layer's own `group_send` on the thread's event loop (kept between
batches, so the layer keeps its connection). A slow or absent channel layer never slows a
decision or a fill. When the queue is full (the layer has been away for a while) new
events are dropped and logged; `flush` waits for the queue to empty and is called at exit.
"""
import asyncio
import atexit
import logging
import os
import queue
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
MAX_BATCH = 500
BATCH_WAIT_S = 0.005  # after the first event, what else comes within 5 ms is sent in the same turn of the loop

_sender_lock = threading.Lock()
_sender: "_Sender | None" = None


def group_name(kind: str) -> str:
    return f"events.{kind}"


def make_event(kind: str, data: dict) -> dict:
    return {"type": kind, "ts": time.time_ns() // 1_000_000, "data": data}


class _Sender:
    """This process's sender thread, the queue it drains and the event loop it sends on."""

    def __init__(self, layer):
        self.layer = layer
        self.loop = asyncio.new_event_loop()
        self.pid, self.failed = os.getpid(), 0
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.pending = 0  # queued or being sent
        self.idle = threading.Condition()
        threading.Thread(target=self._drain, name="trifecta-events", daemon=True).start()

    def _drain(self):
        while True:
            batch = [self.queue.get()]
            time.sleep(BATCH_WAIT_S)
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self.queue.get_nowait())
                except queue.Empty:
                    break
            try:
                sent, error = self.loop.run_until_complete(self._send(batch))
            except Exception as exc:  # the loop itself failed, not the layer
                sent, error = 0, exc
            if sent < len(batch):
                logger.warning("%d events not published: channel layer unreachable", len(batch) - sent, exc_info=error)
            with self.idle:
                self.pending -= len(batch)
                self.failed += len(batch) - sent
                self.idle.notify_all()

    async def _send(self, batch: list[tuple[str, dict]]) -> tuple[int, Exception | None]:
        """Send the batch in order: how many were sent, and the error that stopped it. After a
        failure the rest of the batch is not tried (the layer is away: each would wait as long)."""
        for sent, (kind, message) in enumerate(batch):
            try:
                await asyncio.wait_for(self.layer.group_send(group_name(kind), message), SEND_TIMEOUT_S)
            except Exception as exc:
                return sent, exc
        return len(batch), None

    def put(self, kind: str, message: dict) -> bool:
        with self.idle:
            if self.pending >= MAX_QUEUED:
                self.failed += 1
                logger.warning("event %s dropped: %d events already wait for the channel layer", kind, MAX_QUEUED)
                return False
            self.pending += 1
        self.queue.put((kind, message))
        return True

    def flush(self, timeout: float) -> int:
        with self.idle:
            if not self.idle.wait_for(lambda: self.pending == 0, timeout):
                raise TimeoutError(f"{self.pending} events still queued after {timeout} s")
            failed, self.failed = self.failed, 0
        return failed


def _current_sender(layer) -> _Sender:
    """This process's sender for this channel layer (a forked child starts its own: the parent's
    thread did not survive the fork; a layer built again from changed settings gets a new one)."""
    global _sender
    with _sender_lock:
        if _sender is None or _sender.pid != os.getpid() or _sender.layer is not layer:
            _sender = _Sender(layer)
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
    return _current_sender(layer).put(kind, {"type": "stream.event", "text": text})


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
