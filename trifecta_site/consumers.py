"""The WebSocket stream at /ws/stream/.

Authenticated by the session cookie (dashboard) or a REST API token (scripts:
`?token=...` or an `Authorization: Token ...` header). Clients subscribe to event
kinds; by default to all of them. Messages from the client:
`{"action": "subscribe", "kinds": [...]}` and `{"action": "unsubscribe", "kinds": [...]}`.

An open socket is checked again every STREAM_RECHECK_S seconds, against the database,
so it closes (4401) in whichever web process holds it once its user is deactivated, its
session ends (logout, expiry, password change) or its token is deleted. A wrong token
counts as a failed sign-in; an address locked out by too many is refused (4429).
"""
import asyncio
import logging
from importlib import import_module
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import DatabaseError
from rest_framework.authtoken.models import Token

from .lockout import is_locked, record_failure, request_from_scope
from .events import KINDS, group_name

logger = logging.getLogger(__name__)

UNAUTHENTICATED = 4401
LOCKED_OUT = 4429


def token_user(key: str):
    """The user of this REST API token, refused as the API refuses it (unknown token, inactive user): None then."""
    try:
        token = Token.objects.select_related("user").get(key=key)
    except Token.DoesNotExist:
        return None
    return token.user if token.user.is_active else None


@database_sync_to_async
def user_for_token(key: str, scope=None):
    """The token's user, or None; with `scope`, refused outright from a locked-out address
    ("locked") and a wrong token counted against the address, as the REST API does."""
    request = request_from_scope(scope) if scope is not None else None
    if request is not None and is_locked(request):
        return "locked"
    user = token_user(key)
    if user is None and request is not None:
        record_failure(request, StreamConsumer)
    return user


@database_sync_to_async
def still_signed_in(user_pk, session_key: str | None, token_key: str | None) -> bool:
    """Whether the socket's credentials still hold: its token (exists, user active) or its
    session (not ended or expired, user active, password unchanged: Django's own `get_user`)."""
    if token_key is not None:
        user = token_user(token_key)
        return user is not None and user.pk == user_pk
    from django.contrib.auth import get_user
    from django.http import HttpRequest

    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user = get_user(request)
    return user.is_authenticated and user.pk == user_pk


def token_from_scope(scope) -> str | None:
    query = parse_qs(scope.get("query_string", b"").decode())
    if query.get("token"):
        return query["token"][0]
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, key = value.decode().partition(" ")
            if scheme.lower() == "token" and key:
                return key.strip()
    return None


class StreamConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        user = self.scope.get("user")
        self.token_key = self.session_key = None
        if user is None or not user.is_authenticated:
            self.token_key = token_from_scope(self.scope)
            user = await user_for_token(self.token_key, self.scope) if self.token_key else None
        else:
            self.session_key = self.scope["session"].session_key
        if user is None or user == "locked":
            await self.close(code=LOCKED_OUT if user == "locked" else UNAUTHENTICATED)
            return
        self.scope["user"] = user
        self.kinds: set[str] = set()
        await self.accept()
        self.watcher = asyncio.ensure_future(self.watch_credentials(user.pk))
        query = parse_qs(self.scope.get("query_string", b"").decode())
        wanted = query["kinds"][0].split(",") if query.get("kinds") else list(KINDS)
        await self.subscribe(wanted)

    async def subscribe(self, kinds):
        unknown = [k for k in kinds if k not in KINDS]
        if unknown:
            await self.send_json({"type": "error", "data": {"unknown_kinds": unknown, "kinds": list(KINDS)}})
        for kind in kinds:
            if kind in KINDS and kind not in self.kinds:
                await self.channel_layer.group_add(group_name(kind), self.channel_name)
                self.kinds.add(kind)
        await self.send_json({"type": "subscribed", "data": {"kinds": sorted(self.kinds)}})

    async def unsubscribe(self, kinds):
        for kind in kinds:
            if kind in self.kinds:
                await self.channel_layer.group_discard(group_name(kind), self.channel_name)
                self.kinds.discard(kind)
        await self.send_json({"type": "subscribed", "data": {"kinds": sorted(self.kinds)}})

    async def receive_json(self, content, **kwargs):
        action = content.get("action") if isinstance(content, dict) else None
        kinds = content.get("kinds") if isinstance(content, dict) else None
        if action not in ("subscribe", "unsubscribe") or not isinstance(kinds, list):
            await self.send_json(
                {"type": "error", "data": {"message": 'send {"action": "subscribe"|"unsubscribe", "kinds": [...]}'}}
            )
            return
        await (self.subscribe(kinds) if action == "subscribe" else self.unsubscribe(kinds))

    async def watch_credentials(self, user_pk) -> None:
        """Close the socket once its credentials no longer hold (see the module's docstring).
        A database that does not answer keeps the socket open until the next check."""
        while True:
            await asyncio.sleep(settings.STREAM_RECHECK_S)
            try:
                valid = await still_signed_in(user_pk, self.session_key, self.token_key)
            except DatabaseError:
                logger.warning("stream: credentials not checked again, the database did not answer")
                continue
            if not valid:
                await self.close(code=UNAUTHENTICATED)
                return

    async def disconnect(self, code):
        watcher = getattr(self, "watcher", None)
        if watcher is not None:
            watcher.cancel()
        for kind in getattr(self, "kinds", set()):
            await self.channel_layer.group_discard(group_name(kind), self.channel_name)

    async def dispatch(self, message):
        """An event goes straight to the client. Channels' own dispatch first closes stale
        database connections in a worker thread, for every message: with 200 clients and 20
        events a second that was 4,000 thread hops a second for events that read nothing."""
        if message["type"] == "stream.event":
            await self.stream_event(message)
        else:
            await super().dispatch(message)

    async def stream_event(self, message):
        await self.send(text_data=message["text"])  # encoded once by the publisher
