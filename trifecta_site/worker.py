"""The Celery worker's consumer (setting `CELERY_WORKER_CONSUMER`), imported by workers only."""
import logging

from celery.worker.consumer import Consumer as CeleryConsumer

logger = logging.getLogger(__name__)


class Consumer(CeleryConsumer):
    """Celery's consumer, surviving the loss of a Redis broker while it holds unacknowledged tasks.

    On a lost connection Celery 5.7 collects the connection, which detaches kombu's
    transport, and then closes it: closing the Redis channel tries to restore the
    unacknowledged messages through the detached transport and raises AttributeError,
    which Celery treats as fatal ("Unrecoverable error": the worker exits instead of
    reconnecting). The restore cannot reach Redis then anyway; the messages stay in
    Redis's unacked set for the visibility-timeout sweep. The connection is already
    dropped when the error is raised, so the consumer goes on to reconnect.
    """

    def on_connection_error_after_connected(self, exc):
        try:
            super().on_connection_error_after_connected(exc)
        except AttributeError:
            logger.warning("unacknowledged tasks not restored on the lost broker connection; "
                           "the visibility-timeout sweep restores them", exc_info=True)
