"""Services of the scan side: polling feeds, running scans and storing what they find."""
from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import time
from contextlib import nullcontext
from datetime import datetime, timedelta
from decimal import Decimal

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from trifecta_site import events
from trifecta_site.clock import ms_to_datetime
from trifecta_site.models import kept_configuration

from . import models
from .feeds import current_feed, outages
from .feeds.base import DOWN, Feed, FeedError, FeedStatus
from .feeds.snapshot import publish_snapshot
from .models import BinaryPayout, FeedState, Opportunity, ScanRun, WithdrawalFee
from .scanning import SCANNERS

logger = logging.getLogger(__name__)
DECIDE_TASK = "execution.tasks.decide"


def record_feed_status(*, feed_name: str, statuses: list[FeedStatus]) -> list[FeedState]:
    """Store each venue's status; publish a `feed` event for every venue whose state changed.

    The statuses are the whole of the running feed: rows of other feeds or venues (an
    earlier run's, another recording's) are deleted, so health and the dashboard show
    the current feed only. A venue going down or coming back is logged, once each way.
    """
    now = timezone.now()
    changed = []
    rows = []
    with transaction.atomic():
        current = {status.venue for status in statuses}
        FeedState.objects.exclude(feed=feed_name).delete()
        FeedState.objects.filter(feed=feed_name).exclude(venue__in=current).delete()
        existing = {row.venue: row for row in FeedState.objects.filter(feed=feed_name)}
        for status in statuses:
            row = existing.get(status.venue) or FeedState(feed=feed_name, venue=status.venue)
            if row.state != status.state:
                changed.append(status)
                _log_transition(feed_name, status, previous=row.state or None)
            row.state = status.state
            row.detail = status.detail[:500]
            row.last_error = status.last_error[:500]
            row.error_at = ms_to_datetime(status.error_at)
            row.last_ok_at = ms_to_datetime(status.last_ok_at)
            row.updated_at = now
            row.save()
            rows.append(row)
        for status in changed:
            data = {"feed": feed_name, **status.as_dict()}
            transaction.on_commit(lambda data=data: events.publish("feed", data))
    return rows


def poll_feed(*, feed: Feed) -> list[FeedState]:
    """Refresh a feed and store what it says about each venue.

    A feed that raises is recorded as down for every venue it knows, with the reason;
    the desk goes on.
    """
    try:
        refreshed = feed.refresh()
        statuses = feed.status()
        if refreshed:
            share_market(feed)
    except Exception as exc:  # logged once, as the venues' transition to down (`record_feed_status`)
        logger.debug("feed %s failed to refresh", feed.name, exc_info=True)
        statuses = [
            FeedStatus(venue=name, state=DOWN, last_error=f"{type(exc).__name__}: {exc}")
            for name in _known_venues(feed)
        ]
    return record_feed_status(feed_name=feed.name, statuses=statuses)


def _log_transition(feed_name: str, status: FeedStatus, previous: str | None) -> None:
    """One line when a venue goes down, one when it is ok again (nothing per tick)."""
    if status.state == DOWN:
        logger.warning("feed %s: %s is down: %s", feed_name, status.venue, status.last_error or status.detail or "no reason given")
    elif previous == DOWN:
        logger.info("feed %s: %s is %s again", feed_name, status.venue, status.state)


def share_market(feed: Feed) -> None:
    """Publish what a live feed just fetched for the desk workers (`feeds.snapshot`)."""
    try:
        publish_snapshot(feed)
    except Exception:
        logger.warning("market snapshot not published (cache unreachable)", exc_info=True)


def _known_venues(feed: Feed) -> list[str]:
    try:
        return sorted(feed.venues())
    except Exception:
        return [feed.name]


def poll_configured_feed() -> list[FeedState]:
    """Poll the feed the settings name; a feed that cannot even be built is recorded down."""
    try:
        feed = current_feed()
    except Exception as exc:  # logged once, as the transition to down
        logger.debug("feed %s cannot start", settings.TRIFECTA_FEED, exc_info=True)
        status = FeedStatus(venue="*", state=DOWN, last_error=f"{type(exc).__name__}: {exc}")
        return record_feed_status(feed_name=settings.TRIFECTA_FEED, statuses=[status])
    return poll_feed(feed=feed)


def route_of(candidate) -> str:
    """What makes two opportunities the same exposure (the governor refuses duplicates)."""
    f = candidate.figures
    if candidate.kind == "arbitrage" and f.get("type") == "triangular":
        return "tri:{}:{}".format(f["venue"], ">".join(f"{leg['side']}:{leg['symbol']}" for leg in f["path"]))
    if candidate.kind == "arbitrage":
        return f"xv:{f['symbol']}:{f['buy_venue']}>{f['sell_venue']}"
    if candidate.kind == "forex":
        return f"fx:{f['venue']}:{f['symbol']}"
    return f"bin:{f['venue']}:{f['symbol']}:{f['direction']}:{f['expiry_s']}"


def signature(candidate) -> tuple:
    """What makes a candidate the same opportunity again: its route, its market data and its figures."""
    figures = {k: v for k, v in candidate.as_json().items() if k != "ts"}
    return route_of(candidate), candidate.observed_at, json.dumps(figures, sort_keys=True)


_unstored_runs: contextvars.ContextVar = contextvars.ContextVar("unstored_scan_runs", default=None)
RUNS_PER_INSERT = 500


@contextlib.contextmanager
def scan_runs_inserted_together():
    """Inside the block, scan runs that kept nothing are inserted many at a time, in order,
    before the next run that kept something and at the end: for a database's only writer
    (a replay), where nobody reads them meanwhile."""
    pending: list[ScanRun] = []
    token = _unstored_runs.set(pending)
    try:
        yield
    finally:
        _unstored_runs.reset(token)
        _insert_runs(pending)


def _insert_runs(pending: list) -> None:
    if pending:
        ScanRun.objects.bulk_create(pending)
        pending.clear()


def store_scan(*, result, started_at: datetime, duration_ms, top_n: int, feed_status: dict, error: str = "",
               decide: bool = True, previous: set | None = None):
    """Store a scan run and its top N candidates in one transaction; after commit, announce them and
    queue a decision for each (`decide=False` leaves deciding to the caller, as a replay does).

    `previous` holds the signatures of what the last scan of this kind kept (updated here):
    a candidate found again on the same market data with the same figures is not a new
    opportunity, so it is counted (`unchanged_repeat`) and not stored or decided again.
    """
    ranked = list(enumerate(result.top(top_n), start=1))
    if previous is not None:
        signatures = [signature(candidate) for _, candidate in ranked]
        repeats = [s in previous for s in signatures]
        previous.clear()
        previous.update(signatures)
        if any(repeats):
            result.skipped["unchanged_repeat"] += sum(repeats)
            ranked = [pair for pair, repeat in zip(ranked, repeats) if not repeat]
    kept = [candidate for _, candidate in ranked]
    run = ScanRun(
        kind=result.kind,
        started_at=started_at,
        market_ts=result.ts,
        duration_ms=Decimal(str(round(duration_ms, 3))),
        instruments_seen=result.instruments_seen,
        opportunities_found=len(result.candidates),
        opportunities_kept=len(kept),
        skipped=dict(result.skipped),
        feed_status=feed_status,
        error=error[:500],
    )
    pending = _unstored_runs.get()
    if pending is not None:
        if not kept:
            pending.append(run)
            if len(pending) >= RUNS_PER_INSERT:
                _insert_runs(pending)
            return run, []
        _insert_runs(pending)  # the runs before this one keep their order
    with transaction.atomic() if kept else nullcontext():  # one insert alone needs no transaction of its own
        run.save(force_insert=True)
        rows = []
        for rank, candidate in ranked:
            f = candidate.figures
            rows.append(
                Opportunity(
                    kind=candidate.kind,
                    type=f.get("type", ""),
                    symbol=candidate.symbol[:200],
                    venues=candidate.venues,
                    direction=f.get("signal") or f.get("direction") or "",
                    route=route_of(candidate)[:300],
                    risk_score=candidate.risk_score,
                    net_pct=f.get("net_pct"),
                    expected_profit=f.get("expected_profit"),
                    expected_profit_usd=f.get("expected_profit_usd"),
                    confidence=f.get("confidence"),
                    probability=f.get("probability"),
                    figures=candidate.as_json(),
                    rank=rank,
                    observed_at=ms_to_datetime(candidate.observed_at),
                    market_ts=candidate.ts,
                    detected_at=started_at,
                    scan_run=run,
                )
            )
        stored = Opportunity.objects.bulk_create(rows)
        for opportunity in stored:
            transaction.on_commit(lambda o=opportunity: events.publish("opportunity", opportunity_event(o)))
        if decide:  # sent by name: the desk's deciding lives above the scanners
            for opportunity in stored:
                transaction.on_commit(lambda pk=opportunity.pk: current_app.send_task(DECIDE_TASK, args=(pk,)))
    return run, stored


def opportunity_event(opportunity) -> dict:
    return {
        "id": opportunity.pk,
        "kind": opportunity.kind,
        "symbol": opportunity.symbol,
        "venues": opportunity.venues,
        "status": opportunity.status,
        "rank": opportunity.rank,
        "detected_at": opportunity.detected_at.isoformat(),
        "figures": opportunity.figures,
    }


def prune_history(*, older_than_days: int) -> dict:
    """Delete scan runs and opportunities older than the retention."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    opportunities, _ = Opportunity.objects.filter(detected_at__lt=cutoff).delete()
    runs, _ = ScanRun.objects.filter(started_at__lt=cutoff).delete()
    return {"opportunities": opportunities, "scan_runs": runs}


SETTINGS_MODELS = {"arbitrage": "ArbitrageSettings", "forex": "ForexSettings", "binary": "BinarySettings"}
_scanner_state: dict[str, object] = {}  # per process: e.g. arbitrage route history across scans


def forget_scan_state() -> None:
    """Start this process's scanners afresh (a replay is a new desk)."""
    _scanner_state.clear()


def scan_options(kind: str, row) -> dict:
    """What a scan reads from the database besides its thresholds (kept per process until configuration changes)."""
    if kind == "arbitrage":
        fees = kept_configuration("withdrawal fees", lambda: {(f.venue, f.currency): f.fee for f in WithdrawalFee.objects.all()})
        return {"withdrawal_fees": fees, "rebalance": row.rebalance}
    if kind == "binary":
        return {"payouts": kept_configuration("binary payouts", lambda: dict(BinaryPayout.objects.values_list("symbol", "payout")))}
    return {}


def run_scan(*, kind: str, feed: Feed, decide: bool = True):
    """Scan the feed as it is now with the thresholds in the database; store the top N (and queue their decisions)."""
    scanner = SCANNERS[kind]
    row = getattr(models, SETTINGS_MODELS[kind]).get_solo()
    thresholds = row.thresholds(scanner.thresholds_type)
    state = _scanner_state.setdefault(kind, scanner.new_state())
    previous = _scanner_state.setdefault(f"{kind}:stored", set())
    if feed.refresh():  # live feeds poll (at most once a second per process); replay does nothing
        share_market(feed)
    statuses = feed.status()
    options = scan_options(kind, row)
    if kind == "arbitrage":
        options["venue_status"] = {s.venue: s.state for s in statuses}
    started_at = timezone.now()
    began = time.perf_counter()
    result = scanner.scan(feed, now=feed.now(), thresholds=thresholds, state=state, **options)
    duration_ms = (time.perf_counter() - began) * 1000
    return store_scan(
        result=result, started_at=started_at, duration_ms=duration_ms, top_n=row.top_n,
        feed_status={s.venue: s.state for s in statuses}, decide=decide, previous=previous,
    )


def run_configured_scan(kind: str):
    """Scan this process's feed; a feed that cannot start is already reported down by `poll_feeds`."""
    try:
        feed = current_feed()
    except FeedError as exc:
        outages.cannot_run(f"{kind} scan", str(exc))
        return None
    outcome = run_scan(kind=kind, feed=feed)
    outages.runs_again(f"{kind} scan")
    return outcome

