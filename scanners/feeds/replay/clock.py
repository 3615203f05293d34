"""The replay's clock: recording time that either steps when told or follows the wall clock."""
from __future__ import annotations

from typing import Callable

from ..base import wall_ms


class ReplayClock:
    """The replay's notion of now, in recording time.

    `stepped` clocks move only when told (`set`, `advance`: tests, backtests, the scan
    command). `realtime` clocks run at `speed` times wall time from `anchor_wall_ms`
    (simulated = start + (wall − anchor) × speed); processes given the same anchor agree
    on the time. Without `loop` a realtime clock stops at `end`. With `loop` it starts
    over at `start` after `end`, and the feed adds lap × (end − start + 1) ms to every
    timestamp it returns (its `now()` included), so the desk's time never runs backwards
    and the same recorded row comes back on each lap later by exactly that shift.
    """

    def __init__(self, start: int, end: int | None = None, speed: float | None = None,
                 anchor_wall_ms: int | None = None, loop: bool = False, wall_clock: Callable[[], int] = wall_ms):
        self.start = start
        self.end = end
        self.speed = speed
        self.loop = loop and end is not None
        self.wall_clock = wall_clock
        self.anchor_wall_ms = anchor_wall_ms if anchor_wall_ms is not None else wall_clock()
        self._position = start

    @classmethod
    def stepped(cls, start: int) -> ReplayClock:
        return cls(start)

    @classmethod
    def realtime(cls, start: int, end: int, speed: float = 1.0, anchor_wall_ms: int | None = None,
                 loop: bool = False, wall_clock: Callable[[], int] = wall_ms) -> ReplayClock:
        if not speed > 0:
            raise ValueError(f"replay speed must be positive, not {speed!r}")
        if end < start:
            raise ValueError(f"replay end {end} is before start {start}")
        return cls(start, end, speed, anchor_wall_ms, loop, wall_clock)

    @property
    def is_stepped(self) -> bool:
        return self.speed is None

    def set(self, ts: int) -> None:
        if not self.is_stepped:
            raise ValueError("a realtime replay clock follows the wall clock: it cannot be set")
        self._position = ts

    def advance(self, ms: int) -> None:
        self.set(self._position + ms)

    def position(self) -> tuple[int, int]:
        """(recording time, shift added to every timestamp served); the desk's now is their sum."""
        if self.is_stepped:
            return self._position, 0
        elapsed = max(0, int((self.wall_clock() - self.anchor_wall_ms) * self.speed))
        recording_time = self.start + elapsed
        if recording_time <= self.end:
            return recording_time, 0
        if not self.loop:
            return self.end, 0
        span = self.end - self.start + 1
        lap, into = divmod(elapsed, span)
        return self.start + into, lap * span

    def now(self) -> int:
        position, shift = self.position()
        return position + shift

    def shift_at(self, ts: int) -> int:
        """The shift of the lap that desk time `ts` falls in (a look back may reach an earlier lap)."""
        if self.is_stepped or not self.loop or ts <= self.end:
            return 0
        span = self.end - self.start + 1
        return (ts - self.start) // span * span
