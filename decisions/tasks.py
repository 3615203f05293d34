from celery import shared_task
from django.db import InterfaceError, OperationalError

from scanners.feeds import desk_feed
from scanners.feeds.base import FeedError

from . import pipeline


@shared_task(ignore_result=True, autoretry_for=(OSError, FeedError, OperationalError, InterfaceError), retry_backoff=True,
             max_retries=5)
def decide(opportunity_id: int):
    """Decide one opportunity; when the governor says execute, execute it in this task (idempotent both ways):
    booked with the decision where it can be, else on its own. A lost database connection rolled back what
    it interrupted: retry with backoff."""
    feed = desk_feed()
    outcome = pipeline.decide_opportunity(opportunity_id=opportunity_id, feed=feed, execute=True)
    if outcome.verdict == pipeline.EXECUTE and outcome.trade is None:
        from execution.tasks import execute_approved

        execute_approved(opportunity_id=opportunity_id, feed=feed)


@shared_task(ignore_result=True, expires=60)
def decide_pending(older_than_s: int = 60, limit: int = 500):
    """Queue again the decisions and executions whose messages the broker lost (a Redis that
    restarted without persistence, a publish that failed as Redis went away): the database,
    not the queue, says what is still to do. Deciding twice is harmless (`decide` is idempotent
    and hands an approved opportunity without a trade to execution again)."""
    from django.utils import timezone

    for pk in pipeline.pending_opportunity_ids(now=timezone.now(), older_than_s=older_than_s, limit=limit):
        decide.delay(pk)
