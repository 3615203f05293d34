"""The WebSocket stream at /ws/stream/.

Authenticated by the session cookie (dashboard) or a REST API token (scripts:
`?token=...` or an `Authorization: Token ...` header). Clients subscribe to event
kinds; by default to all of them. Messages from the client:
`{"action": "subscribe", "kinds": [...]}` and `{"action": "unsubscribe", "kinds": [...]}`.
"""
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from rest_framework.authtoken.models import Token

from .events import KINDS, group_name

UNAUTHENTICATED = 4401


@database_sync_to_async
def user_for_token(key: str):
    """The user of this REST API token, refused as the API refuses it (unknown token, inactive user): None then."""
    try:
        token = Token.objects.select_related("user").get(key=key)
    except Token.DoesNotExist:
        return None
    return token.user if token.user.is_active else None


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
        if user is None or not user.is_authenticated:
            key = token_from_scope(self.scope)
            user = await user_for_token(key) if key else None
        if user is None:
            await self.close(code=UNAUTHENTICATED)
            return
        self.scope["user"] = user
        self.kinds: set[str] = set()
        await self.accept()
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

    async def disconnect(self, code):
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
