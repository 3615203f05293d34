"""Every decided signal's outcome, not only the traded ones', teaches the agents.

A forex or binary signal the desk decided but did not trade is watched as if it had been:
entered at the price and time its fill would have had (the same planning as a trade, at a
nominal size: its levels, not its money, decide the outcome), then closed by the monitor's
own rules (`forex_look`, `binary_exit`). When it closes, the agent of its kind learns from
it as from a closed trade. A calibration learned from a dozen trades stays its prior's; the
signals around them say what this kind of signal really does. Signals repeat while the
market that made them lasts, so their outcomes come in correlated runs: the agent learns
only from independent windows, a watch entered while no counted watch or open position of
the same instrument and direction is open (`counted`); the others are recorded as
`overlapped` and not followed (a month of minute bars opens thousands of them).
"""
from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, transaction

from decisions.agents import RealizedOutcome, learn
from decisions.governor import EXECUTE
from decisions.models import Decision
from scanners.feeds.base import Feed, NotYetObserved
from scanners.models import Opportunity

from .models import ExecutionSettings, Position, SignalWatch
from .monitor import Exit, binary_exit, forex_look
from .planning import plan_execution

WATCHED_KINDS = ("forex", "binary")
OVERLAPPED = "overlapped"
NOMINAL_SIZE_USD = Decimal(1000)  # the size a watch's entry is planned at (its outcome does not depend on it)
BATCH = 500  # watches started or looked at per pass: a backlog drains over the next passes
LEVELS = ("venue", "symbol", "direction", "quantity", "entry_price", "stop_loss", "take_profit", "expiry_ts", "payout")


def watch_signals(*, feed: Feed, now: int, settings: ExecutionSettings) -> dict:
    """Start watching the signals decided since the last pass, and settle the watches whose rules
    now close them (each outcome learned once, in the transaction that settles it). Returns counts."""
    started = start_watches(feed=feed, now=now, settings=settings)
    settled = settle_watches(feed=feed, now=now, settings=settings)
    return {"watches_started": started, "watches_settled": settled}


def unwatched_signal_ids(*, now: int, settings: ExecutionSettings) -> list[int]:
    """Forex and binary signals decided with a probability, not traded, and not yet watched
    (within the longest holding time: an older one could no longer be followed)."""
    since = now - settings.max_holding_minutes * 60_000
    return list(Opportunity.objects.filter(
        kind__in=WATCHED_KINDS, status__in=(Opportunity.DECIDED, Opportunity.REJECTED), probability__isnull=False,
        market_ts__gte=since, watch__isnull=True).order_by("id").values_list("id", flat=True)[:BATCH])


def start_watches(*, feed: Feed, now: int, settings: ExecutionSettings) -> int:
    ids = unwatched_signal_ids(now=now, settings=settings)
    if not ids:
        return 0
    decided = dict(Decision.objects.filter(opportunity_id__in=ids, layer=Decision.GOVERNOR)
                   .exclude(verdict=EXECUTE).values_list("opportunity_id", "market_ts"))  # an approved one is a trade's
    started = 0
    for opportunity in Opportunity.objects.filter(pk__in=decided).order_by("id"):
        try:
            plan = plan_execution(opportunity, feed=feed, settings=settings, size_usd=NOMINAL_SIZE_USD,
                                  decided_ts=decided[opportunity.pk])
        except NotYetObserved:
            continue  # its fill time lies ahead of the feed's clock: a later pass starts it
        watch = SignalWatch(opportunity=opportunity, kind=opportunity.kind, venue=opportunity.figures.get("venue", ""),
                            symbol=opportunity.symbol, direction=opportunity.direction or "", opened_ts=plan.opened_ts,
                            checked_ts=plan.opened_ts)
        if plan.rejected is not None or plan.position is None:  # no entry it could have had: nothing to learn
            watch.status, watch.settled_ts = SignalWatch.SETTLED, plan.opened_ts
            watch.outcome = (plan.rejected.reason if plan.rejected is not None else "no_entry").lower()
        else:
            spec = dict(plan.position)
            watch.spread = spec.pop("spread", Decimal(0))
            for name in LEVELS:
                if name in spec:
                    setattr(watch, name, spec[name])
            watch.counted = not overlaps(watch)
            if not watch.counted:  # its outcome would teach nothing: recorded, not followed
                watch.status, watch.settled_ts, watch.outcome = SignalWatch.SETTLED, plan.opened_ts, OVERLAPPED
        try:
            with transaction.atomic():
                watch.save()
        except IntegrityError:
            continue  # another monitor started it
        started += 1
    return started


def overlaps(watch: SignalWatch) -> bool:
    """Whether a counted watch or an open position of the same instrument and direction is open:
    then this window's outcome is mostly theirs again."""
    same = dict(kind=watch.kind, symbol=watch.symbol, direction=watch.direction)
    return (SignalWatch.objects.filter(status=SignalWatch.OPEN, counted=True, **same).exists()
            or Position.objects.filter(status=Position.OPEN, **same).exists())


def as_position(watch: SignalWatch) -> Position:
    """The watch as the (unsaved) position the monitor's rules read."""
    return Position(kind=watch.kind, opened_ts=watch.opened_ts, checked_ts=watch.checked_ts,
                    **{name: getattr(watch, name) for name in LEVELS})


def settle_watches(*, feed: Feed, now: int, settings: ExecutionSettings) -> int:
    settled, looked = 0, []
    for watch in SignalWatch.objects.filter(status=SignalWatch.OPEN).order_by("opened_ts", "id")[:BATCH]:
        position = as_position(watch)
        if watch.kind == "binary":
            closing = binary_exit(position, feed, now, settings)
        else:
            look = forex_look(position, feed, now, settings, spread=watch.spread)
            closing = look.exit
            if closing is None and not look.stale and now > watch.checked_ts:
                looked.append(watch.pk)
        if closing is not None and settle(watch, closing):
            settled += 1
    if looked:  # one statement for the pass, not one per watch
        SignalWatch.objects.filter(pk__in=looked, status=SignalWatch.OPEN).update(checked_ts=now)
    return settled


def settle(watch: SignalWatch, closing: Exit) -> bool:
    """Settle the watch and, when it is counted, teach its agent, once: a guarded update decides
    which monitor does."""
    with transaction.atomic():
        if not SignalWatch.objects.filter(pk=watch.pk, status=SignalWatch.OPEN).update(
                status=SignalWatch.SETTLED, outcome=closing.reason, won=closing.won, settled_ts=closing.ts):
            return False
        if not watch.counted:
            return True
        opportunity = watch.opportunity
        learn(RealizedOutcome(kind=watch.kind, route=opportunity.route, symbol=watch.symbol, direction=watch.direction,
                              realized_pnl=closing.pnl, won=closing.won, figures=opportunity.figures))
    return True
