"""Guessing API tokens is limited like guessing admin passwords: django-axes counts both.

Admin's login goes through `django.contrib.auth.authenticate`, which axes watches (its
backend refuses a locked-out address, its signal handler records a failure). A REST API
token or a WebSocket `?token=` is checked without `authenticate`, so a wrong one here
sends the same `user_login_failed` signal and a locked-out address is refused before its
token is even looked up. Failures live in the database (axes' AccessAttempt), so the limit
holds across web processes; an admin unlocks an address by deleting its access attempt.
"""
from __future__ import annotations

from axes.handlers.proxy import AxesProxyHandler
from django.conf import settings
from django.contrib.auth.signals import user_login_failed
from django.http import HttpRequest
from rest_framework import exceptions, status
from rest_framework.authentication import TokenAuthentication

# No username goes with a token; axes still counts the attempt against the address.
TOKEN_CREDENTIALS = {"username": None}


class LockedOut(exceptions.APIException):
    """429 with Retry-After (DRF sets it from `wait`) and a message saying what to do."""

    status_code = status.HTTP_429_TOO_MANY_REQUESTS
    default_code = "locked_out"

    def __init__(self):
        self.wait = lockout_seconds()
        super().__init__(lockout_message())


def lockout_seconds() -> int:
    cool_off = settings.AXES_COOLOFF_TIME
    return int(cool_off.total_seconds()) if cool_off else 0


def lockout_message() -> str:
    return settings.AXES_COOLOFF_MESSAGE


def is_locked(request) -> bool:
    return AxesProxyHandler.is_locked(request, TOKEN_CREDENTIALS)


def record_failure(request, sender) -> None:
    """Counted as a failed sign-in from the request's address (axes' handler stores it)."""
    user_login_failed.send(sender=sender, credentials=dict(TOKEN_CREDENTIALS), request=request)


class LockoutTokenAuthentication(TokenAuthentication):
    """The API's token authentication, refused with 429 for an address locked out by too
    many failed sign-ins (passwords or tokens), and counting each wrong token."""

    def authenticate(self, request):
        if not self.has_token(request):
            return None  # no token offered: nothing guessed, the next authenticator decides
        if is_locked(request):
            raise LockedOut()
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            record_failure(request, type(self))
            if is_locked(request):
                raise LockedOut()
            raise

    def has_token(self, request) -> bool:
        scheme = self.keyword.lower().encode()
        parts = request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1", "replace").split()
        return bool(parts) and parts[0].lower() == scheme


def request_from_scope(scope) -> HttpRequest:
    """A WebSocket handshake as the HttpRequest axes reads (address, forwarded-for, agent, path)."""
    request = HttpRequest()
    request.method = "GET"
    request.path = request.path_info = scope.get("path", "")
    client = scope.get("client")
    request.META["REMOTE_ADDR"] = client[0] if client else ""
    for name, value in scope.get("headers", []):
        if name in (b"x-forwarded-for", b"user-agent"):
            request.META["HTTP_" + name.decode("latin-1").upper().replace("-", "_")] = value.decode("latin-1")
    return request
