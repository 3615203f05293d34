"""Waiting on a condition, never for a fixed time: what a test waits for is polled until it
holds or its deadline passes, and a timeout says what was awaited (with a log's tail)."""
import json
import time
from pathlib import Path

import redis


def wait_for(condition, timeout_s: float, what: str, log: Path | None = None, interval_s: float = 0.1):
    """`condition()`'s first truthy result, polled every `interval_s` until `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() >= deadline:
            tail = log.read_text()[-3000:] if log is not None and log.exists() else ""
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{tail}")
        time.sleep(interval_s)


def poll(condition, timeout_s: float, interval_s: float = 0.2):
    """`condition()`'s first truthy result within `timeout_s`, else None (for a condition that may not come)."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = condition()
        if result or time.monotonic() >= deadline:
            return result or None
        time.sleep(interval_s)


class LogSince:
    """A process's log file from where it stood when a test began (a process shared by a
    module's tests logs them all); `wait_for` shows its tail on a timeout."""

    def __init__(self, path: Path):
        self.path, self.offset = path, path.stat().st_size if path.exists() else 0

    def exists(self) -> bool:
        return self.path.exists()

    def read_text(self) -> str:
        with self.path.open("rb") as handle:
            handle.seek(self.offset)
            return handle.read().decode(errors="replace")


def unacked_task_ids(broker_url: str) -> set[str]:
    """The ids of the tasks kombu's Redis transport holds as delivered and not acknowledged
    (its `unacked` hash: [message, exchange, routing key] by delivery tag)."""
    client = redis.Redis.from_url(broker_url)
    ids = set()
    for value in client.hvals("unacked"):
        message = json.loads(value)[0]
        ids.add(message.get("headers", {}).get("id"))
    return ids - {None}


def queued_task_ids(broker_url: str, queue: str = "desk") -> set[str]:
    """The ids of the tasks waiting in `queue`."""
    client = redis.Redis.from_url(broker_url)
    return {json.loads(item).get("headers", {}).get("id") for item in client.lrange(queue, 0, -1)} - {None}


def broker_holds_none_of(broker_url: str, task_ids, queue: str = "desk") -> bool:
    """Whether none of `task_ids` is queued or delivered-unacknowledged any more: none can run again."""
    task_ids = set(task_ids)
    return not (task_ids & (unacked_task_ids(broker_url) | queued_task_ids(broker_url, queue)))
