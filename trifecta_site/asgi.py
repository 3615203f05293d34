"""ASGI entry point: HTTP (Django, with static files served by the app itself) and
the WebSocket stream, refused for foreign origins."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "trifecta_site.settings")
os.environ.setdefault("DATABASE_POOL", "true")  # each request runs in its own thread: pool connections
django_application = get_asgi_application()

from urllib.parse import urlsplit  # noqa: E402

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402
from django.http.request import split_domain_port, validate_host  # noqa: E402
from django.urls import path  # noqa: E402

from .consumers import StreamConsumer  # noqa: E402

DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_parts(origin: str) -> tuple[str, str, int] | None:
    """`scheme://host[:port]` as (scheme, host, port), the port filled in; None if it is not one."""
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def allowed_origin(scope) -> bool:
    """Whether a WebSocket handshake comes from a page of the desk itself, compared by scheme,
    host and port (channels' AllowedHostsOriginValidator compares the host only, so a page on
    another port of the same machine, or plain http beside https, used a signed-in session).

    Allowed: the origin the request was made to (its Host header, a host in ALLOWED_HOSTS, and
    the connection's scheme: wss, or https from the proxy as SECURE_PROXY_SSL_HEADER says) and
    any origin in CSRF_TRUSTED_ORIGINS. A browser always sends Host; a handshake without one
    (in-process tests) is compared with ALLOWED_HOSTS on the scheme's default port."""
    headers = {}
    for name, value in scope.get("headers", []):
        headers[name.decode("latin-1")] = value.decode("latin-1")
    origin = origin_parts(headers.get("origin", ""))
    if origin is None:
        return False
    for trusted in settings.CSRF_TRUSTED_ORIGINS:
        host = trusted.partition("://")[2]
        wanted = origin_parts(trusted.replace("://*.", "://", 1))
        if wanted and origin[0] == wanted[0] and origin[2] == wanted[2] and (
                origin[1] == wanted[1] or (host.startswith("*.") and origin[1].endswith("." + wanted[1]))):
            return True
    scheme = "https" if scope.get("scheme") == "wss" else "http"
    proxy_header = settings.SECURE_PROXY_SSL_HEADER
    if proxy_header:
        name = proxy_header[0].removeprefix("HTTP_").lower().replace("_", "-")
        if headers.get(name, "").split(",")[0].strip() == proxy_header[1]:
            scheme = "https"
    if "host" in headers:
        own = origin_parts(f"{scheme}://{headers['host']}")
        domain, _ = split_domain_port(headers["host"])
        return own is not None and origin == own and validate_host(domain, settings.ALLOWED_HOSTS)
    return origin[0] == scheme and origin[2] == DEFAULT_PORTS[scheme] and validate_host(origin[1], settings.ALLOWED_HOSTS)


class SameOriginValidator:
    """Refuses a WebSocket handshake whose Origin is not `allowed_origin` (403, as channels' own)."""

    def __init__(self, application):
        self.application = application

    async def __call__(self, scope, receive, send):
        if scope["type"] == "websocket" and not allowed_origin(scope):
            return await WebsocketDenier()(scope, receive, send)
        return await self.application(scope, receive, send)


application = ProtocolTypeRouter(
    {
        "http": ASGIStaticFilesHandler(django_application),
        "websocket": SameOriginValidator(
            AuthMiddlewareStack(URLRouter([path("ws/stream/", StreamConsumer.as_asgi())]))
        ),
    }
)
