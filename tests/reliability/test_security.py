"""Who may reach what, and what never leaves the desk: every URL for anonymous and
non-staff users (taken from the URL resolver, so a new URL is covered the day it is
added), the WebSocket's gaps, CSRF on session writes, secrets in the repository and the
logs, and no code path that could place an order or read an account.

Covered elsewhere and not repeated here: the API's anonymous reads and staff-only
controls (tests/site/test_api.py), the WebSocket's anonymous and foreign-origin refusals
(tests/site/test_stream.py), `check --deploy` with the production settings
(tests/site/test_settings.py) and the ccxt feed's credential refusal
(tests/scanners/test_ccxt_feed.py).
"""
import ast
import inspect
import io
import logging
import re
import subprocess

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import Controls, RiskLimits
from scanners.feeds.exchanges import ACCOUNT_METHODS, CcxtFeed, PaperOnlyError
from tests.conftest import FIXTURES, ROOT
from tests.venue_server import VenueServer
from trifecta_site.asgi import application

WRITES = ("post", "put", "patch", "delete")


def routes(patterns=None, prefix=""):
    """Every URL pattern of the site as (route text, pattern)."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, prefix + str(entry.pattern))
        else:
            assert isinstance(entry, URLPattern)
            yield prefix + str(entry.pattern), entry


def _regex_sample(match: re.Match) -> str:
    name, body = match.group(1), match.group(2)
    if name == "format":
        return "json"
    if re.fullmatch(r"\w+(\|\w+)*", body):
        return body.split("|")[0]  # an admin app label: the first one
    return "no-such-page" if name == "url" else "1"


def sample_path(route: str) -> str:
    """A concrete path the route matches: converters and regex groups replaced by sample values."""
    path = re.sub(r"\(\?P<(\w+)>((?:[^()]|\([^()]*\))*)\)", _regex_sample, route)
    path = re.sub(r"<drf_format_suffix:\w+>", ".json", path)
    path = re.sub(r"<(?:\w+:)?\w+>", "1", path)
    path = path.replace("^", "").replace("$", "").replace("/?", "/").replace("\\.", ".")
    return "/" + path


def site_paths() -> list[str]:
    paths = []
    for route, pattern in routes():
        path = sample_path(route)
        assert resolve(path).func == pattern.callback or route.endswith("(?P<url>.*)$"), (route, path)
        paths.append(path)
    return sorted(set(paths))


PATHS = site_paths()
ADMIN_PUBLIC = {"/admin/login/", "/admin/logout/"}  # the way in and out
API_PUBLIC = {"/api/health/"}


def kind_of(path: str) -> str:
    if path in ADMIN_PUBLIC or path in API_PUBLIC:
        return "public"
    if path.startswith("/admin/") or path == "/":
        return "page"
    if path.startswith("/api/"):
        return "api"
    return "unclassified"


def test_every_url_of_the_site_is_classified():
    """A URL outside admin, the API and the dashboard needs its own rule here before it ships."""
    assert len(PATHS) > 200
    assert [p for p in PATHS if kind_of(p) == "unclassified"] == []


def assert_sent_to_login(response, path):
    assert response.status_code == 302, (path, response.status_code)
    assert response["Location"].split("?")[0] in ("/admin/login/", settings.LOGIN_URL), (path, response["Location"])


@pytest.mark.django_db
def test_anonymous_users_reach_nothing_but_login_and_health():
    client = APIClient()
    for path in PATHS:
        response = client.get(path)
        kind = kind_of(path)
        if kind == "page":
            assert_sent_to_login(response, path)
        elif kind == "api":
            assert response.status_code == 401 and response["WWW-Authenticate"] == "Token", (path, response.status_code)
        for method in WRITES:
            response = getattr(client, method)(path, {}, format="json")
            if kind == "page":
                assert_sent_to_login(response, path)
            elif kind == "api":
                assert response.status_code == 401, (method, path, response.status_code)
    assert client.get("/api/health/").status_code in (200, 503)
    assert client.get("/admin/login/").status_code == 200


def allowed_api_methods(path: str) -> set[str]:
    view = resolve(path).func
    actions = getattr(view, "actions", None)
    if actions is not None:
        return set(actions)
    return {m.lower() for m in view.cls().allowed_methods}


@pytest.mark.django_db
def test_a_signed_in_non_staff_user_reads_the_api_but_changes_nothing_and_never_sees_admin():
    user = get_user_model().objects.create_user("viewer", password="pw-for-tests-1")
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    pages = Client()
    pages.force_login(user)
    before = (Controls.get_solo().__dict__.copy(), RiskLimits.get_solo().__dict__.copy())
    checked = 0
    for path in PATHS:
        kind = kind_of(path)
        if kind == "page" and path != "/":
            assert_sent_to_login(pages.get(path), path)
            assert_sent_to_login(pages.post(path, {"kill_switch": "on"}), path)
        elif kind == "api":
            allowed = allowed_api_methods(path)
            for method in WRITES:
                status = getattr(api, method)(path, {"kill_switch": True, "max_trades_per_day": 1}, format="json").status_code
                assert status == 403 or (status == 405 and method not in allowed), (method, path, status)
                checked += method in allowed
    assert checked >= 10  # controls, limits and each kind's thresholds: PUT and PATCH
    assert pages.get("/").status_code == 200  # the dashboard is for every desk account
    for row, saved in zip((Controls.get_solo(), RiskLimits.get_solo()), before):
        assert {k: v for k, v in row.__dict__.items() if k != "_state"} == {k: v for k, v in saved.items() if k != "_state"}


@pytest.mark.django_db
def test_session_writes_in_admin_and_the_api_need_the_csrf_token():
    """tests/site/test_api.py checks PATCH /api/controls/; here every writable settings endpoint and an admin form."""
    staff = get_user_model().objects.create_superuser("operator", password="pw-for-tests-1")
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    for path in ("/api/controls/", "/api/limits/", "/api/thresholds/arbitrage/", "/api/thresholds/forex/",
                 "/api/thresholds/binary/"):
        for method in ("put", "patch"):
            response = getattr(client, method)(path, {"max_trades_per_day": 1}, content_type="application/json")
            assert response.status_code == 403 and "CSRF" in response.json()["detail"], (method, path)
    response = client.post("/admin/decisions/risklimits/1/change/", {"max_trades_per_day": "1"})
    assert response.status_code == 403
    assert RiskLimits.get_solo().max_trades_per_day == 50
    page = client.get("/admin/decisions/risklimits/1/change/")
    token = page.cookies["csrftoken"].value if "csrftoken" in page.cookies else client.cookies["csrftoken"].value
    response = client.patch("/api/limits/", {"max_trades_per_day": 7}, content_type="application/json", HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200 and RiskLimits.get_solo().max_trades_per_day == 7


# --- WebSocket: the gaps tests/site/test_stream.py leaves -------------------------------------


def ws_connect(path, headers):
    async def scenario():
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect()
        await comm.disconnect()
        return connected, code

    return async_to_sync(scenario)()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin", [b"http://evil.example", b"http://localhost.evil.example", b"null", None])
def test_a_valid_token_does_not_get_past_a_foreign_or_missing_origin(origin):
    user = get_user_model().objects.create_user("script", password="pw-for-tests-1")
    key = Token.objects.create(user=user).key
    headers = [(b"authorization", f"Token {key}".encode())] + ([(b"origin", origin)] if origin else [])
    assert ws_connect(f"/ws/stream/?token={key}", headers)[0] is False


@pytest.mark.django_db(transaction=True)
def test_a_deactivated_user_s_token_is_refused():
    user = get_user_model().objects.create_user("gone", password="pw-for-tests-1")
    key = Token.objects.create(user=user).key
    assert ws_connect(f"/ws/stream/?token={key}", [(b"origin", b"http://localhost")])[0] is True
    user.is_active = False
    user.save()
    assert ws_connect(f"/ws/stream/?token={key}", [(b"origin", b"http://localhost")]) == (False, 4401)


# --- secrets ---------------------------------------------------------------------------------

SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED |PGP )?PRIVATE KEY"),
    "AWS access key": re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36}\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "assigned credential": re.compile(
        r"""(?i)\b(?:api[_-]?key|api[_-]?secret|secret[_-]?key|secret|password|passwd|token|apikey)\b["']?\s*[:=]\s*"""
        r"""["']([A-Za-z0-9+/_\-]{24,})["']"""),
    "URL with a password": re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@'\"]+:([^/\s:@'\"]{12,})@"),
}


def tracked_text_files():
    names = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, names):
        path = ROOT / name.decode()
        if path.is_file() and path.stat().st_size < 5_000_000:
            data = path.read_bytes()
            if b"\0" not in data[:8000]:
                yield name.decode(), data.decode("utf-8", "replace")


def test_no_tracked_file_holds_a_private_key_or_an_api_secret():
    scanned, found = 0, []
    for name, text in tracked_text_files():
        scanned += 1
        for what, pattern in SECRET_PATTERNS.items():
            for match in pattern.finditer(text):
                found.append(f"{name}:{text.count(chr(10), 0, match.start()) + 1}: {what}")
    assert scanned > 150 and found == []


def test_the_generated_secret_key_and_the_database_are_not_tracked():
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    assert not [n for n in tracked if n.startswith("var/") or n.endswith((".sqlite3", "secret_key", ".pem", ".key", ".env"))]
    ignored = subprocess.run(["git", "check-ignore", "-q", "var/secret_key"], cwd=ROOT)
    assert ignored.returncode == 0


@pytest.mark.django_db
def test_a_failing_request_logs_neither_the_secret_key_nor_the_caller_s_credentials(monkeypatch):
    """The request logger writes the traceback of a 500; nothing in it may be a key a reader could reuse."""
    import decisions.api

    user = get_user_model().objects.create_user("caller", password="pw-for-tests-1", is_staff=True)
    token = Token.objects.create(user=user).key
    session = Client()
    session.force_login(user)
    session_id = session.cookies["sessionid"].value

    def broken(**_):
        raise RuntimeError("risk usage failed")

    monkeypatch.setattr(decisions.api, "risk_usage", broken)
    output = io.StringIO()
    handler = logging.StreamHandler(output)
    handler.setFormatter(logging.Formatter(settings.LOGGING["formatters"]["plain"]["format"]))
    logging.getLogger().addHandler(handler)
    try:
        client = Client(raise_request_exception=False, HTTP_AUTHORIZATION=f"Token {token}")
        client.cookies["sessionid"] = session_id
        assert client.get("/api/risk/?token=" + token).status_code == 500
        wrong = APIClient().get("/api/limits/", HTTP_AUTHORIZATION="Token " + token[::-1])
        assert wrong.status_code == 401 and wrong["WWW-Authenticate"] == "Token"
    finally:
        logging.getLogger().removeHandler(handler)
    logged = output.getvalue()
    assert "Internal Server Error: /api/risk/" in logged and "risk usage failed" in logged  # the traceback was logged
    for secret in (settings.SECRET_KEY, token, token[::-1], session_id, "pw-for-tests-1"):
        assert secret not in logged


# --- no order, no account: statically and at runtime ------------------------------------------

FORBIDDEN_CALL = re.compile(
    r"^(?:private\w*|sapi\w*|create_\w*order\w*|create\w*Order\w*|cancel_\w+|cancel[A-Z]\w*|edit_order\w*|editOrder\w*"
    r"|fetch_balance|fetchBalance|fetch_\w*orders?|fetch\w*Orders?|fetch_order_(?:trades|status)|fetchOrder(?:Trades|Status)"
    r"|fetch_(?:my_\w+|deposit\w*|withdrawal\w*|ledger|positions?)|fetch(?:My\w+|Deposit\w*|Withdrawal\w*|Ledger|Positions?)"
    r"|withdraw\w*|transfer\w*|set_leverage|setLeverage|set_margin_mode|setMarginMode"
    r"|order_send|order_check|positions_get|orders_get|account_info)$"  # and MetaTrader 5's trading calls
)
SOURCE_DIRS = ("scanners", "decisions", "execution", "trifecta_site", "bench")


def test_no_source_file_calls_an_order_or_account_method():
    """A static scan of every call in our code (tests excluded: they call these to prove the guard)."""
    calls, found = 0, []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call):
                    calls += 1
                    func = node.func
                    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                    if FORBIDDEN_CALL.match(name):
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}()")
                    if name in ("getattr", "setattr") and len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                        if isinstance(node.args[1].value, str) and FORBIDDEN_CALL.match(node.args[1].value):
                            found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}(..., {node.args[1].value!r})")
    assert calls > 1000 and found == []
    assert all(FORBIDDEN_CALL.match(name) for name in ACCOUNT_METHODS)


SAMPLE_ARGUMENTS = {"symbol": "BTC/USDT", "type": "market", "side": "buy", "amount": 1, "price": 100, "code": "BTC",
                    "address": "an-address", "fromAccount": "spot", "toAccount": "funding", "leverage": 2,
                    "marginMode": "cross", "ids": ["1"], "stopLossPrice": 90, "takeProfitPrice": 110, "stopLoss": 90,
                    "takeProfit": 110, "triggerPrice": 95, "trailingAmount": 1, "trailingPercent": 1,
                    "orders": [{"symbol": "BTC/USDT", "type": "market", "side": "buy", "amount": 1}]}


@pytest.fixture(scope="module")
def guarded_exchange():
    with VenueServer(FIXTURES / "recordings" / "two-venues", clock=1700000020000, timeout_s=5) as server:
        feed = CcxtFeed(["binance"], ["BTC/USDT"], timeout_ms=1500, urls=server.urls(),
                        exchange_options={"binance": {"rateLimit": 10}}, min_refresh_ms=0)
        try:
            feed.refresh()  # markets loaded through the public guard, as in production
            yield feed, feed._exchanges["binance"], server
        finally:
            feed.close()


def test_every_order_and_account_method_of_the_exchange_raises_before_any_request(guarded_exchange):
    """Not only the list the feed replaces: every unified method of those families ccxt has."""
    import ccxt.async_support as ccxt

    feed, exchange, server = guarded_exchange
    names = sorted(n for n in dir(exchange) if FORBIDDEN_CALL.match(n) and callable(getattr(exchange, n))
                   and not n.endswith(("_ws", "Ws", "_request", "Request")))  # websockets: not used; *_request: build a dict, send nothing
    assert len(names) > 150  # ccxt's unified account/order methods and binance's private endpoints
    before = dict(server.requests)
    outcomes = {}
    for name in names:
        method = getattr(exchange, name)
        args = [SAMPLE_ARGUMENTS.get(p.name, "1") for p in inspect.signature(method).parameters.values()
                if p.kind is p.POSITIONAL_OR_KEYWORD
                and (p.default is inspect.Parameter.empty or (p.default is None and p.name in SAMPLE_ARGUMENTS))]
        try:
            feed._call(method(*args), timeout=5)
        except PaperOnlyError:
            outcomes[name] = "refused"
        except (ccxt.BaseError, TypeError) as exc:
            outcomes[name] = type(exc).__name__  # the venue lacks it or the arguments do not fit: checked below
        else:
            outcomes[name] = "ran"
    assert [n for n, o in outcomes.items() if o == "ran"] == []
    assert sum(o == "refused" for o in outcomes.values()) > 0.9 * len(names)
    camel = [head + "".join(w.title() for w in words) for head, *words in (n.split("_") for n in ACCOUNT_METHODS)]
    assert {outcomes.get(name, "refused") for name in (*ACCOUNT_METHODS, *camel)} == {"refused"}
    assert dict(server.requests) == before  # not one request left for any of them
