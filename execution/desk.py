"""The whole desk in one process, one step at a time: for replays and tests.

`run_cycle` does at one feed time what the scan worker, the desk workers and beat do
live: scan each kind, decide every stored opportunity, execute the approved ones, then
look at the open positions and the signals watched (`signals`). The same services run in
both; only the scheduling differs.
"""
from __future__ import annotations

from typing import Callable

from decisions.governor import EXECUTE
from scanners.feeds.base import Feed, NotYetObserved
from scanners.services import run_scan

from .deciding import decide_opportunity, execute_opportunity
from .models import ExecutionSettings
from .monitor import monitor_positions
from .signals import watch_signals


def run_cycle(*, feed: Feed, kinds=("arbitrage", "forex", "binary"), monitor: bool = True,
              on_decided: Callable | None = None) -> dict:
    """One step of the desk at the feed's current time; returns counts of what happened.

    `on_decided(opportunity, outcome, trade)` is told of every decided opportunity (the
    trade is None when nothing was executed); a replay scores what was skipped with it.
    """
    counts = {"opportunities": 0, "decisions": 0, "executed": 0, "stored": {}}
    for kind in kinds:
        _, stored = run_scan(kind=kind, feed=feed, decide=False)
        counts["opportunities"] += len(stored)
        counts["stored"][kind] = len(stored)
        for opportunity in stored:
            outcome = decide_opportunity(opportunity_id=opportunity.pk, feed=feed, execute=True)
            counts["decisions"] += 1
            trade = outcome.trade
            if trade is not None:
                counts["executed"] += 1
            elif outcome.verdict == EXECUTE:
                try:
                    trade = execute_opportunity(opportunity_id=opportunity.pk, feed=feed)
                except NotYetObserved:
                    continue  # a realtime clock: the execution waits for its fill time
                counts["executed"] += 1
            if on_decided is not None:
                on_decided(opportunity, outcome, trade)
    if monitor:
        counts.update(monitor_positions(feed=feed))
        counts.update(watch_signals(feed=feed, now=feed.now(), settings=ExecutionSettings.get_solo()))
    return counts
