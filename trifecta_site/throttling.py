"""REST API throttles: one counter per client and window, and they let a request through
when their counters (in Redis) are away.

DRF's own throttles keep every request's timestamp of the last period in one cache entry
and read and write the whole list on every request: at the default 6,000 a minute that is
thousands of floats pickled twice per request, more the busier the API. Here each client
has one counter per window (`incr`, one round trip); a window's limit may be spent at its
end and the next one's at its start, as with any fixed window.

With Redis stopped every request would otherwise fail with a 500, `/api/health/`
included, exactly when operators need it. A broker outage suspends rate limiting
instead; the first request after Redis is back counts again.

A client is known by its address as `NUM_PROXIES` says (REST_FRAMEWORK, from the
environment; 0 unless proxies in front of the desk are configured): with 0 the socket's
address alone, with N the address the N-th proxy from us appended to X-Forwarded-For.
Never the header as the client sent it: DRF's default (NUM_PROXIES unset) uses the whole
header, so a client rotating it escaped its limit or spent another address's quota.
"""
import logging
import time

import redis
from rest_framework import throttling

logger = logging.getLogger(__name__)


class _WindowCounter:
    def allow_request(self, request, view):
        if self.rate is None:
            return True
        self.key = self.get_cache_key(request, view)
        if self.key is None:
            return True
        self.now = self.timer()
        window = int(self.now // self.duration)
        key = f"{self.key}:{window}"
        try:
            try:
                count = self.cache.incr(key)
            except ValueError:  # the window's first request
                count = 1 if self.cache.add(key, 1, self.duration) else self.cache.incr(key)
        except (redis.RedisError, OSError):
            logger.warning("rate limit not applied: the cache is unreachable")
            return True
        self.window_end = (window + 1) * self.duration
        return count <= self.num_requests

    def wait(self):
        return max(0.0, self.window_end - self.now)

    def timer(self):
        return time.time()


class AnonRateThrottle(_WindowCounter, throttling.AnonRateThrottle):
    pass


class UserRateThrottle(_WindowCounter, throttling.UserRateThrottle):
    pass


def client_address(request) -> str:
    """The address throttles and the sign-in lockout (AXES_CLIENT_IP_CALLABLE) count against:
    DRF's own `get_ident`, which honours NUM_PROXIES, so both agree on who a client is."""
    return throttling.BaseThrottle().get_ident(request)
