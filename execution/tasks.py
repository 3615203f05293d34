from celery import shared_task
from django.db import InterfaceError, OperationalError

from scanners.feeds import desk_feed
from scanners.feeds.base import FeedError, NotYetObserved
from trifecta_site.locks import exclusive
from trifecta_site import events

from . import executors, monitor
from .portfolio import equity_figures


@shared_task(bind=True, ignore_result=True, max_retries=20)
def execute(self, opportunity_id: int):
    """Fill one approved opportunity once; wait out the latency, retry a lost database with backoff."""
    try:
        executors.execute_opportunity(opportunity_id=opportunity_id, feed=desk_feed())
    except NotYetObserved as pending:
        raise self.retry(countdown=_until(pending), max_retries=None)
    except (OperationalError, InterfaceError, FeedError) as exc:  # the database or the market snapshot is away: back off
        raise self.retry(exc=exc, countdown=min(30, 0.5 * 2 ** self.request.retries))


def execute_approved(*, opportunity_id: int, feed) -> None:
    """Fill an opportunity the calling task has just approved, in that task when the feed has
    reached its fill time (no latency: the `optimistic` preset, a replay ahead of it), else
    queue `execute` for that time. Executing in place saves a trip through the queue, which
    behind a burst of decisions is a wait for all of them (`make bench-execute`)."""
    try:
        executors.execute_opportunity(opportunity_id=opportunity_id, feed=feed)
    except NotYetObserved as pending:
        execute.apply_async((opportunity_id,), countdown=_until(pending))


def _until(pending: NotYetObserved) -> float:
    """Seconds until the feed's clock reaches the fill time."""
    return max(0.01, (pending.ts - pending.now) / 1000)


@shared_task(ignore_result=True, expires=10)
def monitor_positions():
    """Close what must close, mark the rest, and publish the portfolio's figures (`stats` event)."""
    with exclusive("monitor_positions", ttl_s=60) as mine:
        if mine:
            monitor.monitor_positions(feed=desk_feed())
            events.publish("stats", equity_figures())
