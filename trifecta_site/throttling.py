"""REST API throttles that let a request through when their counters (in Redis) are away.

DRF's throttles keep their counters in the default cache; with Redis stopped every request
would fail with a 500, `/api/health/` included, exactly when operators need it. A broker
outage suspends rate limiting instead; the first request after Redis is back counts again.
"""
import logging

import redis
from rest_framework import throttling

logger = logging.getLogger(__name__)


class _FailOpen:
    def allow_request(self, request, view):
        try:
            return super().allow_request(request, view)
        except (redis.RedisError, OSError):
            logger.warning("rate limit not applied: the cache is unreachable")
            return True


class AnonRateThrottle(_FailOpen, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_FailOpen, throttling.UserRateThrottle):
    pass
