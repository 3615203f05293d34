"""The `notify` queue's tasks: thin, they take ids and call one service."""
from celery import shared_task
from django.utils import timezone

from . import services


@shared_task(bind=True, ignore_result=True, max_retries=None)
def deliver(self, delivery_id: int):
    """Send one delivery; try again when the service says when (rate limit, or backoff after a
    failure: the tries are counted in the database, not here)."""
    retry_in = services.send_delivery(delivery_id=delivery_id)
    if retry_in is not None:
        raise self.retry(countdown=retry_in)


@shared_task(ignore_result=True, expires=60)
def deliver_pending():
    """Queue again the deliveries whose messages the broker lost: the database says what is still to send."""
    for pk in services.pending_delivery_ids(now=timezone.now()):
        deliver.delay(pk)
