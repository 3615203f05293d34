"""The desk queue's tasks: thin, they take ids and call one service."""
from celery import shared_task
from django.db import InterfaceError, OperationalError
from django.utils import timezone

from decisions.governor import EXECUTE
from decisions.pipeline import pending_opportunity_ids
from scanners.feeds import desk_feed, outages
from scanners.feeds.base import FeedError, NotYetObserved
from trifecta_site import events
from trifecta_site.locks import exclusive

from . import deciding, monitor, signals
from .models import ExecutionSettings
from .portfolio import equity_figures


@shared_task(ignore_result=True, autoretry_for=(OSError, FeedError, OperationalError, InterfaceError), retry_backoff=True,
             max_retries=5)
def decide(opportunity_id: int):
    """Decide one opportunity (scanners send it by name); an approved one is booked with its
    decision where its fill time has come, else executed when it has. A lost database
    connection rolled back what it interrupted: retry with backoff (idempotent both ways)."""
    feed = desk_feed()
    outcome = deciding.decide_opportunity(opportunity_id=opportunity_id, feed=feed, execute=True)
    if outcome.verdict == EXECUTE and outcome.trade is None:
        execute_approved(opportunity_id=opportunity_id, feed=feed)


@shared_task(ignore_result=True, expires=60)
def decide_pending(older_than_s: int = 60, limit: int = 500):
    """Queue again the decisions and executions whose messages the broker lost: the database,
    not the queue, says what is still to do (deciding twice is harmless)."""
    for pk in pending_opportunity_ids(now=timezone.now(), older_than_s=older_than_s, limit=limit):
        decide.delay(pk)


@shared_task(bind=True, ignore_result=True, max_retries=20)
def execute(self, opportunity_id: int):
    """Fill one approved opportunity once; wait out the latency, retry a lost database with backoff."""
    try:
        deciding.execute_opportunity(opportunity_id=opportunity_id, feed=desk_feed())
    except NotYetObserved as pending:
        raise self.retry(countdown=_until(pending), max_retries=None)
    except (OperationalError, InterfaceError, FeedError) as exc:  # the database or the market snapshot is away: back off
        raise self.retry(exc=exc, countdown=min(30, 0.5 * 2 ** self.request.retries))


def execute_approved(*, opportunity_id: int, feed) -> None:
    """Fill an opportunity the calling task has just approved, in that task when the feed has
    reached its fill time, else queue `execute` for that time (no trip through the queue
    behind a burst of decisions)."""
    try:
        deciding.execute_opportunity(opportunity_id=opportunity_id, feed=feed)
    except NotYetObserved as pending:
        execute.apply_async((opportunity_id,), countdown=_until(pending))


def _until(pending: NotYetObserved) -> float:
    """Seconds until the feed's clock reaches the fill time."""
    return max(0.01, (pending.ts - pending.now) / 1000)


@shared_task(ignore_result=True, expires=10)
def monitor_positions():
    """Close what must close, mark the rest, follow the signals not traded (`signals`), and publish the portfolio's figures (`stats` event)."""
    with exclusive("monitor_positions", ttl_s=60) as mine:
        if mine:
            try:
                feed = desk_feed()
                monitor.monitor_positions(feed=feed)
                signals.watch_signals(feed=feed, now=feed.now(), settings=ExecutionSettings.get_solo())
            except NotYetObserved:
                raise
            except FeedError as exc:  # the feed is down: said once, not a traceback every tick
                outages.cannot_run("monitor_positions", str(exc))
                return
            outages.runs_again("monitor_positions")
            events.publish("stats", equity_figures())
