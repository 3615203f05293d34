"""Replaying the whole desk over a recording, as fast as the machine allows.

The same services as live, on a stepped replay clock: each kind is scanned at every
multiple of its beat interval, every stored opportunity is decided, the approved ones
are executed, and the monitor looks at open positions every monitor interval. Times
at which a kind's scan could only find nothing (no market data inside its freshness
window, as `manage.py scan` skips them) and monitor times with no new market data
and nothing due are skipped: skipping them changes no result.

What the pipeline did not execute is scored too, under the same fill model: the
executor plans it (fills after the latency, fees, depth) without booking, and a forex
or binary position that was never opened is followed by the monitor's own rules until
it would have closed. The report shows what each limit cost or saved.

Positions still open when the recording ends close as `monitor.final_exit` says, so the
final equity is the starting value plus the realized P&L.
"""
from __future__ import annotations

import functools
import heapq
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

import numpy as np

from decisions.governor import EXECUTE
from decisions.models import Decision
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from scanners.scanning import SCANNERS
from scanners.services import SETTINGS_MODELS, forget_scan_state, scan_runs_inserted_together
from scanners import models as scan_models
from trifecta_site.models import one_configuration_reading
from trifecta_site.schedule import DEFAULT_SCHEDULE

from .desk import run_cycle
from .planning import EXECUTORS, Rejected
from .models import ExecutionSettings, Position, SignalWatch, Trade
from .monitor import binary_exit, close_remaining, final_exit, forex_look
from .portfolio import current_portfolio, has_inventory, take_snapshot
from .signals import WATCHED_KINDS

KINDS = ("arbitrage", "forex", "binary")
DEFAULT_INTERVALS_S = {
    "arbitrage": DEFAULT_SCHEDULE["scan arbitrage"][1],
    "forex": DEFAULT_SCHEDULE["scan forex"][1],
    "binary": DEFAULT_SCHEDULE["scan binary"][1],
    "monitor": DEFAULT_SCHEDULE["monitor positions"][1],
}
ZERO = Decimal(0)


@dataclass
class Shadow:
    """An opportunity the desk did not execute, followed as if it had been (never booked)."""

    opportunity_id: int
    kind: str
    position: Position | None = None
    spread: Decimal = ZERO
    realized_pnl: Decimal | None = None
    outcome: str = ""
    closed_ts: int | None = None

    @property
    def settled(self) -> bool:
        return bool(self.outcome)

    def settle(self, *, outcome: str, pnl: Decimal | None, ts: int | None) -> None:
        self.outcome, self.realized_pnl, self.closed_ts = outcome, pnl, ts


@dataclass
class Schedule:
    """The multiples of `every` at which a scan (or a look) could change anything.

    Such a time has market data in the window before it (`times_with_fresh_data`'s rule);
    after a scan that found nothing, a kind with `same_answer_until` is not scanned again
    before new data of its own or that time."""

    every: int
    window: int
    events: np.ndarray
    same_answer_until: Callable[[int], int] | None = None

    def _ceil(self, ts: int) -> int:
        return -(-ts // self.every) * self.every

    def _fresh_from(self, candidate: int) -> int | None:
        while True:
            index = int(np.searchsorted(self.events, candidate - self.window, side="right"))
            if index == len(self.events):
                return None
            if self.events[index] <= candidate:
                return candidate
            candidate = self._ceil(int(self.events[index]))

    def first(self, start: int) -> int | None:
        return self._fresh_from(self._ceil(start))

    def after(self, ts: int, *, found: int) -> int | None:
        candidate = ts + self.every - ts % self.every
        if not found and self.same_answer_until is not None:
            index = int(np.searchsorted(self.events, ts, side="right"))
            changes = [self.same_answer_until(ts)] + ([int(self.events[index])] if index < len(self.events) else [])
            candidate = max(candidate, self._ceil(min(changes)))
        return self._fresh_from(candidate)


@dataclass
class ReplayResult:
    start: int
    end: int
    intervals: dict
    complete: bool = False
    simulated_to: int = 0
    cycles: int = 0
    scans: dict = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    market_events: int = 0
    opportunities: int = 0
    decisions: int = 0
    executed: int = 0
    wall_s: float = 0.0
    shadows: dict[int, Shadow] = field(default_factory=dict)


class Replay:
    """One replay of `reader` over [start, end] in the current database."""

    def __init__(self, reader: RecordingReader, *, start: int | None = None, end: int | None = None,
                 intervals: dict | None = None, progress: Callable[[ReplayResult], None] | None = None):
        self.reader = reader
        self.start = reader.start if start is None else max(start, reader.start)
        self.end = reader.end if end is None else min(end, reader.end)
        if self.end < self.start:
            raise ValueError("the replay window holds no market data")
        self.intervals = {**DEFAULT_INTERVALS_S, **(intervals or {})}
        self.feed = ReplayFeed(reader, ReplayClock.stepped(self.start))
        self.progress = progress
        self.result = ReplayResult(self.start, self.end, dict(self.intervals))
        self.settings = ExecutionSettings.get_solo()
        self._wakes: list[int] = []  # monitor times something is due (a binary expiry, a forex maximum hold)
        self._open_shadows: list[Shadow] = []
        self._unwatched = False  # a signal decided and not traded waits for the monitor to start its watch
        self._event_times: dict[tuple[str, str], np.ndarray] = {}
        self._holds_inventory = False  # venue balances to mark to market between trades
        self._marked_minute: int | None = None

    def _latest_event(self, venue: str, symbol: str, now: int) -> int | None:
        """When this instrument last had new data at or before `now` (a quote, a book, a bar's close)."""
        times = self._event_times.get((venue, symbol))
        if times is None:
            times = self._event_times[(venue, symbol)] = self.reader.event_times(lambda v, sym: (v, sym) == (venue, symbol))
        index = int(np.searchsorted(times, now, side="right")) - 1
        return int(times[index]) if index >= 0 else None

    def _kind_events(self, events: np.ndarray, asset_class: str | None) -> np.ndarray:
        if asset_class is None:
            return events
        venues = {name for name, venue in self.reader.venues().items() if venue.asset_class == asset_class}
        mine = self.reader.event_times(lambda venue, symbol: venue in venues)
        return mine[(mine >= self.start) & (mine <= self.end)]

    def schedules(self) -> dict[str, Schedule]:
        """When each kind scans and the monitor looks: every interval, where it could find something."""
        observed = self.reader.event_times()
        events = observed[(observed >= self.start) & (observed <= self.end)]
        self.result.market_events = int(len(events))
        instruments = self.feed.instruments()
        plans = {}
        for kind in KINDS:
            scanner = SCANNERS[kind]
            thresholds = getattr(scan_models, SETTINGS_MODELS[kind]).get_solo().thresholds(scanner.thresholds_type)
            same_answer_until = None
            if scanner.same_answer_until is not None:
                same_answer_until = functools.partial(scanner.same_answer_until, instruments=instruments, events=observed,
                                                      thresholds=thresholds)
            plans[kind] = Schedule(int(self.intervals[kind] * 1000), scanner.fresh_window_ms(thresholds, instruments),
                                   self._kind_events(events, scanner.asset_class), same_answer_until)
        every = int(self.intervals["monitor"] * 1000)
        plans["monitor"] = Schedule(every, every, events)
        return plans

    def run(self) -> ReplayResult:
        """Replay to the end, or until interrupted (Ctrl-C): the result says how far it got.

        The replay is its database's only writer, so the configuration version is read once
        (a change made here still reaches the next read: saving clears the kept rows) and
        scan runs that kept nothing are inserted together."""
        with one_configuration_reading(), scan_runs_inserted_together():
            return self._run()

    def _run(self) -> ReplayResult:
        result = self.result
        began = time.perf_counter()
        plans = self.schedules()
        due = {name: plan.first(self.start) for name, plan in plans.items()}
        forget_scan_state()
        current_portfolio()
        take_snapshot(ts=self.start)
        try:
            while True:
                ts = min((t for t in due.values() if t is not None), default=None)
                if ts is None or ts > self.end:
                    break
                self._wake_until(ts - 1)
                kinds = [kind for kind in KINDS if due[kind] == ts]
                woken = bool(self._wakes) and self._wakes[0] <= ts
                while self._wakes and self._wakes[0] <= ts:
                    heapq.heappop(self._wakes)
                found = self._cycle(ts, kinds, monitor=due["monitor"] == ts or woken)
                for kind in kinds:
                    due[kind] = plans[kind].after(ts, found=found[kind])
                if due["monitor"] == ts:
                    due["monitor"] = plans["monitor"].after(ts, found=True)
                if self.progress is not None:
                    result.wall_s = time.perf_counter() - began
                    self.progress(result)
            self._wake_until(self.end)
            self.feed.at(self.end)
            close_remaining(feed=self.feed, now=self.end)
            self._settle_shadows_at_end()
            result.simulated_to = self.end
            result.complete = True
        except KeyboardInterrupt:
            pass  # a partial report: what happened up to `simulated_to`
        result.wall_s = time.perf_counter() - began
        return result

    def _wake_until(self, ts: int) -> None:
        """Monitor-only cycles for whatever falls due before `ts` (expiries between scans)."""
        while self._wakes and self._wakes[0] <= ts:
            wake = heapq.heappop(self._wakes)
            while self._wakes and self._wakes[0] == wake:
                heapq.heappop(self._wakes)
            self._cycle(wake, [], monitor=True)

    def _needs_look(self, position: Position, now: int) -> bool:
        """Whether the monitor's rules could answer anything new: a binary at expiry, a forex
        position never looked at since it opened, with market data since its last look, or
        past its maximum holding time."""
        if position.kind == "binary":
            return now >= position.expiry_ts
        if now < position.opened_ts:
            return False
        if position.checked_ts <= position.opened_ts or now - position.opened_ts >= self.settings.max_holding_minutes * 60_000:
            return True
        return (self._latest_event(position.venue, position.symbol, now) or 0) > position.checked_ts

    def _cycle(self, ts: int, kinds: list[str], *, monitor: bool) -> dict[str, int]:
        """One step of the desk at `ts`; returns how many opportunities each kind stored."""
        result = self.result
        self.feed.at(ts)
        fields = ("kind", "venue", "symbol", "expiry_ts", "opened_ts", "checked_ts")
        positions = [*Position.objects.filter(status=Position.OPEN).only(*fields),
                     *SignalWatch.objects.filter(status=SignalWatch.OPEN).only(*fields)] if monitor else []
        look = self._unwatched or any(self._needs_look(position, ts) for position in positions)
        if look:
            self._unwatched = False
        counts = run_cycle(feed=self.feed, kinds=kinds, monitor=look, on_decided=self._decided)
        found = counts["stored"]
        if monitor:
            self._follow_shadows(ts)
        if counts["executed"] and not look:
            take_snapshot(ts=ts, feed=self.feed)  # an arbitrage trade realized its P&L: a point of the equity curve
            self._holds_inventory = self._holds_inventory or has_inventory()
        elif monitor and not look and self._holds_inventory and ts // 60_000 != self._marked_minute:
            take_snapshot(ts=ts, feed=self.feed)  # the inventory at market, once a minute: its price risk shows
        if monitor or counts["executed"]:
            self._marked_minute = ts // 60_000
        for kind in kinds:
            result.scans[kind] += 1
        result.cycles += 1
        result.opportunities += counts["opportunities"]
        result.decisions += counts["decisions"]
        result.executed += counts["executed"]
        result.simulated_to = ts
        return found

    def _due(self, position: Position) -> None:
        if position.kind == "binary":
            heapq.heappush(self._wakes, position.expiry_ts)
        else:
            heapq.heappush(self._wakes, position.opened_ts + self.settings.max_holding_minutes * 60_000)

    def _decided(self, opportunity, outcome, trade: Trade | None) -> None:
        if trade is None and opportunity.kind in WATCHED_KINDS and outcome.verdict != EXECUTE:
            self._unwatched = True  # the next monitor pass starts its watch (`signals`)
            heapq.heappush(self._wakes, self.feed.now() + self.settings.fill_latency_ms())
        if trade is not None and trade.status == Trade.OPEN:
            self._due(trade.position)
        if trade is not None and trade.status != Trade.REJECTED:
            return
        self.result.shadows[opportunity.pk] = shadow = Shadow(opportunity.pk, opportunity.kind)
        risk = next((d for d in outcome.decisions if d.layer == Decision.RISK), None)
        size = risk.size_usd if risk is not None else None
        if not size:
            shadow.settle(outcome="no_size", pnl=None, ts=None)
            return
        try:
            plan = EXECUTORS[opportunity.kind].plan(opportunity, feed=self.feed, settings=self.settings, size_usd=size,
                                                    decided_ts=self.feed.now())
        except Rejected as rejection:
            shadow.settle(outcome=rejection.reason.lower(), pnl=None, ts=None)
            return
        if plan.position is None:
            shadow.settle(outcome="filled", pnl=plan.realized_usd, ts=plan.opened_ts)
            return
        spec = dict(plan.position)
        shadow.spread = spec.pop("spread", ZERO)
        shadow.position = Position(opened_ts=plan.opened_ts, checked_ts=plan.opened_ts, **spec)
        self._open_shadows.append(shadow)
        self._due(shadow.position)

    def _follow_shadows(self, now: int) -> None:
        still_open = []
        for shadow in self._open_shadows:
            position = shadow.position
            if not self._needs_look(position, now):
                closing = None  # nothing new since the last look: the rules would answer the same
            elif position.kind == "binary":
                closing = binary_exit(position, self.feed, now, self.settings)
            else:
                look = forex_look(position, self.feed, now, self.settings, spread=shadow.spread)
                closing = look.exit
                if closing is None and not look.stale:
                    position.checked_ts = now
            if closing is None:
                still_open.append(shadow)
            else:
                shadow.settle(outcome=closing.reason, pnl=closing.pnl, ts=closing.ts)
        self._open_shadows = still_open

    def _settle_shadows_at_end(self) -> None:
        for shadow in self._open_shadows:
            closing = final_exit(shadow.position, self.feed, self.end, self.settings, spread=shadow.spread)
            shadow.settle(outcome=closing.reason, pnl=closing.pnl, ts=closing.ts)
        self._open_shadows = []
