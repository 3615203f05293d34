"""Beat's scheduler: the database schedule of django-celery-beat, plus beat's heartbeat."""
import logging
import socket
import time

from django_celery_beat.schedulers import DatabaseScheduler

logger = logging.getLogger(__name__)


class HeartbeatDatabaseScheduler(DatabaseScheduler):
    """Records beat's own heartbeat at most every few seconds, on its tick."""

    heartbeat_every_s = 5.0
    _last_heartbeat = 0.0

    def tick(self, *args, **kwargs):
        now = time.monotonic()
        if now - self._last_heartbeat >= self.heartbeat_every_s:
            from .models import Heartbeat  # beat's scheduler class is imported before Django's apps are ready

            try:
                Heartbeat.record(process=Heartbeat.BEAT, hostname=socket.gethostname())
                self._last_heartbeat = now
            except Exception:  # the database may be briefly away; beat must keep ticking
                logger.exception("could not record beat heartbeat")
        return min(super().tick(*args, **kwargs), self.heartbeat_every_s)
