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
import os
import re
import stat
import subprocess
import sys
import uuid
from html.parser import HTMLParser
from pathlib import Path

import pytest
import redis
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client, RequestFactory, override_settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import AgentState, Controls, RiskLimits
from scanners.feeds.exchanges import ACCOUNT_METHODS, CcxtFeed, PaperOnlyError
from tests.conftest import FIXTURES, ROOT
from tests.venue_server import VenueServer
from trifecta_site import embedded
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
API_PUBLIC = {"/api/health/", "/favicon.ico"}


def kind_of(path: str) -> str:
    if path in ADMIN_PUBLIC or path in API_PUBLIC:
        return "public"
    if path.startswith("/dashboard/") or path == "/sweeps/":
        return "dashboard"  # the dashboard's own reads: any signed-in desk account, GET only
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
        if kind in ("page", "dashboard"):
            assert_sent_to_login(response, path)
        elif kind == "api":
            assert response.status_code == 401 and response["WWW-Authenticate"] == "Token", (path, response.status_code)
        for method in WRITES:
            response = getattr(client, method)(path, {}, format="json")
            if kind in ("page", "dashboard"):
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
        elif kind == "dashboard":
            assert pages.post(path, {"kill_switch": "on"}).status_code == 405, path
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
    import execution.api

    user = get_user_model().objects.create_user("caller", password="pw-for-tests-1", is_staff=True)
    token = Token.objects.create(user=user).key
    session = Client()
    session.force_login(user)
    session_id = session.cookies["sessionid"].value

    def broken(**_):
        raise RuntimeError("risk usage failed")

    monkeypatch.setattr(execution.api, "risk_usage", broken)
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
    r"|watch_(?:balance|orders|my_trades|positions)|watch(?:Balance|Orders|MyTrades|Positions)"  # ccxt.pro's private streams
    r"|order_send|order_check|positions_get|orders_get|account_info)(?:_ws|Ws)?$"  # MetaTrader 5's trading calls; ccxt.pro's *_ws
)
SOURCE_DIRS = ("scanners", "decisions", "execution", "notifications", "sweeps", "trifecta_site", "bench")


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
            yield feed, feed._exchanges["binance"], server  # noqa: SLF001 (our feed's exchange, to call it as the feed does)
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
            feed._call(method(*args), timeout=5)  # noqa: SLF001 (our own feed's call path, the one the guard sits on)
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


# --- issue 31: least privilege and a locked-down host, one test (or more) per finding ---------
# Findings 2, 3 and 5 with the four users on every write: tests/site/test_permissions.py.
# Finding 1 end to end (the run command's own Redis): tests/integration/test_bundled_redis.py.

def test_1_the_bundled_redis_wants_its_password_and_runs_no_command_that_writes_files_or_loads_code(tmp_path):
    port, password = embedded.free_port(), "a-generated-password"
    process = embedded.start_redis(directory=tmp_path / "redis", port=port, env=dict(os.environ), password=password)
    try:
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, socket_timeout=5).publish("trifecta.events.controls", "forged")
        client = redis.Redis(port=port, password=password, socket_timeout=5)
        assert client.ping()
        for command in (("CONFIG", "SET", "dir", str(tmp_path)), ("SAVE",), ("BGSAVE",), ("DEBUG", "SLEEP", "0"),
                        ("MODULE", "LOAD", "/tmp/x.so"), ("SLAVEOF", "127.0.0.1", "1"), ("REPLICAOF", "127.0.0.1", "1")):
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)
        cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes() if Path(f"/proc/{process.pid}").exists() else b""
        assert password.encode() not in cmdline  # `ps` shows the command line to every account
        config = tmp_path / "redis" / "redis.conf"
        assert stat.S_IMODE(config.stat().st_mode) == 0o600 and stat.S_IMODE(config.parent.stat().st_mode) == 0o700
    finally:
        embedded.stop([process], grace_s=5)


@pytest.mark.django_db
def test_2_a_staff_user_without_permissions_changes_neither_controls_nor_limits_nor_thresholds():
    staff = get_user_model().objects.create_user("staff", password="pw-for-tests-1", is_staff=True)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=staff).key}")
    assert api.patch("/api/controls/", {"auto_execute": True}, format="json").status_code == 403
    assert api.patch("/api/limits/", {"max_daily_loss": "999999.00", "max_trades_per_day": 100000}, format="json").status_code == 403
    for kind in ("arbitrage", "forex", "binary"):
        assert api.patch(f"/api/thresholds/{kind}/", {}, format="json").status_code == 403
    assert not Controls.get_solo().auto_execute and RiskLimits.get_solo().max_trades_per_day != 100000


@pytest.mark.django_db
def test_3_a_view_only_staff_user_cannot_reset_the_agents():
    from django.contrib.auth.models import Permission

    viewer = get_user_model().objects.create_user("viewer", password="pw-for-tests-1", is_staff=True)
    viewer.user_permissions.set(Permission.objects.filter(codename="view_agentstate"))
    row = AgentState.objects.create(agent="forex", key="EUR/USD:BUY", wins=7, losses=3)
    pages = Client()
    pages.force_login(viewer)
    pages.post("/admin/decisions/agentstate/", {"action": "reset_agents", "_selected_action": [row.pk], "confirmed": "yes"})
    assert AgentState.objects.filter(pk=row.pk).exists()


def _loosened_var(parent: Path) -> Path:
    """A var/ as an older version left it: folder 0755, database and secret 0644."""
    var = parent / "var"
    (var / "redis").mkdir(parents=True)
    for name in ("trifecta.sqlite3", "secret_key", "redis/redis.log"):
        (var / name).write_text("x" * 60)
        os.chmod(var / name, 0o644)
    os.chmod(var / "redis", 0o755)
    os.chmod(var, 0o755)
    return var


def _start_settings(var: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "SECRET_KEY")}
    env.update(TRIFECTA_VAR_DIR=str(var), DJANGO_SETTINGS_MODULE="trifecta_site.settings")
    subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=ROOT, env=env, check=True, timeout=120)


def test_4_var_and_every_file_in_it_are_the_desk_account_s_alone_even_when_left_looser(tmp_path):
    var = _loosened_var(tmp_path)
    _start_settings(var)  # any process of the desk: web, worker, beat, manage.py
    assert stat.S_IMODE(var.stat().st_mode) == 0o700 and stat.S_IMODE((var / "redis").stat().st_mode) == 0o700
    for path in var.rglob("*"):
        if path.is_file():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="needs root to create a second OS account (useradd)")
def test_4_another_os_account_cannot_read_the_database_or_the_secret_key(tmp_path):
    import pwd
    import tempfile

    name = "trifecta-probe"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name], check=True)
    other = pwd.getpwnam(name)
    parent = Path(tempfile.mkdtemp(dir="/tmp"))
    try:
        os.chmod(parent, 0o755)  # the account may reach var/ itself: only var/'s own modes stand in its way
        var = _loosened_var(parent)

        def read_as_other(path: Path) -> int:
            return subprocess.run(["cat", str(path)], capture_output=True, user=other.pw_uid, group=other.pw_gid,
                                  extra_groups=[]).returncode

        assert read_as_other(var / "trifecta.sqlite3") == 0  # the probe works: before, it could read it
        _start_settings(var)
        for target in ("trifecta.sqlite3", "secret_key", "redis/redis.log"):
            assert read_as_other(var / target) != 0, target
    finally:
        subprocess.run(["rm", "-rf", str(parent)], check=True)


@pytest.fixture
def lockout_after_three():
    """Three failures lock an address out; the attempts table starts empty."""
    from axes.models import AccessAttempt

    AccessAttempt.objects.all().delete()
    with override_settings(AXES_FAILURE_LIMIT=3):
        yield
    AccessAttempt.objects.all().delete()


def admin_login(client: Client, password: str):
    return client.post("/admin/login/?next=/admin/", {"username": "operator", "password": password},
                       REMOTE_ADDR="198.51.100.7")


@pytest.mark.django_db
def test_6_admin_passwords_are_locked_out_after_the_limit_with_a_clear_message_and_an_admin_unlock(lockout_after_three):
    from axes.models import AccessAttempt

    get_user_model().objects.create_superuser("operator", password="the-right-password-1")
    client = Client()
    assert [admin_login(client, f"wrong-{i}").status_code for i in range(2)] == [200, 200]
    refused = admin_login(client, "wrong-3")
    assert refused.status_code == 429 and b"Too many failed sign-ins" in refused.content
    right = admin_login(client, "the-right-password-1")  # even the right password, while locked out
    assert right.status_code == 429 and "_auth_user_id" not in client.session
    attempt = AccessAttempt.objects.get()  # in the database: every web process sees the same count
    assert attempt.ip_address == "198.51.100.7" and attempt.failures_since_start >= 3
    unlocker = get_user_model().objects.create_superuser("second", password="pw-for-tests-1")
    admin = Client()
    admin.force_login(unlocker)
    page = admin.get("/admin/axes/accessattempt/")
    assert page.status_code == 200 and b"198.51.100.7" in page.content
    admin.post("/admin/axes/accessattempt/", {"action": "delete_selected", "_selected_action": [attempt.pk], "post": "yes"})
    assert not AccessAttempt.objects.exists()
    assert admin_login(client, "the-right-password-1").status_code == 302  # unlocked: signed in


@pytest.mark.django_db
def test_6_guessing_api_tokens_is_locked_out_too_and_a_valid_token_waits_with_the_rest(lockout_after_three):
    user = get_user_model().objects.create_user("script", password="pw-for-tests-1")
    good = Token.objects.create(user=user).key
    api = APIClient(REMOTE_ADDR="198.51.100.8")
    statuses = [api.get("/api/controls/", HTTP_AUTHORIZATION=f"Token {uuid.uuid4().hex}").status_code for _ in range(4)]
    assert statuses == [401, 401, 429, 429]
    locked = api.get("/api/controls/", HTTP_AUTHORIZATION=f"Token {good}")
    assert locked.status_code == 429 and "Too many failed sign-ins" in locked.json()["detail"]
    assert int(locked["Retry-After"]) > 0
    elsewhere = APIClient(REMOTE_ADDR="198.51.100.9")  # another address is not locked out
    assert elsewhere.get("/api/controls/", HTTP_AUTHORIZATION=f"Token {good}").status_code == 200


@pytest.mark.django_db(transaction=True)
def test_6_guessing_tokens_on_the_websocket_counts_and_locks_out_as_well(lockout_after_three):
    user = get_user_model().objects.create_user("script", password="pw-for-tests-1")
    good = Token.objects.create(user=user).key

    async def attempt(key):
        comm = WebsocketCommunicator(application, f"/ws/stream/?token={key}", headers=[(b"origin", b"http://localhost")])
        comm.scope["client"] = ("198.51.100.10", 50000)
        connected, code = await comm.connect()
        await comm.disconnect()
        return connected, code

    results = [async_to_sync(attempt)(uuid.uuid4().hex) for _ in range(3)]
    assert [r[0] for r in results] == [False, False, False]
    assert async_to_sync(attempt)(good) == (False, 4429)


@pytest.mark.django_db
def test_7_the_throttle_counts_the_socket_s_address_not_a_forwarded_for_header_the_client_chose(monkeypatch):
    from trifecta_site import throttling

    monkeypatch.setattr(throttling.AnonRateThrottle, "THROTTLE_RATES", {"anon": "3/min", "user": "6000/min"})
    address = f"203.0.113.{uuid.uuid4().int % 250 + 1}"
    client = APIClient(REMOTE_ADDR=address)
    statuses = [client.get("/api/health/", HTTP_X_FORWARDED_FOR=f"10.0.0.{i}").status_code for i in range(5)]
    assert statuses[:3] != [429] * 3 and statuses[3:] == [429, 429]  # rotating the header escapes nothing
    victim = f"203.0.113.{(uuid.uuid4().int % 250) + 1}"
    naming_another = RequestFactory().get("/api/health/", REMOTE_ADDR=address, HTTP_X_FORWARDED_FOR=victim)
    assert throttling.client_address(naming_another) == address  # another address's quota is not spent


def test_7_behind_configured_proxies_the_address_the_outermost_proxy_saw_counts():
    from trifecta_site.throttling import client_address

    request = RequestFactory().get("/api/health/", REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="1.2.3.4, 198.51.100.20")
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}):
        assert client_address(request) == "198.51.100.20"  # a client-set first entry is ignored
    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, "NUM_PROXIES": 0}):
        assert client_address(request) == "10.0.0.2"


def session_headers(user, host: bytes, origin: bytes):
    client = Client()
    client.force_login(user)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    return [(b"host", host), (b"origin", origin), (b"cookie", cookie)]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("origin, accepted", [
    (b"http://127.0.0.1:8000", True),
    (b"http://127.0.0.1:9999", False),  # another port of the same machine: another origin
    (b"https://127.0.0.1", False),
    (b"https://127.0.0.1:8000", False),
    (b"http://localhost:8000", False),  # a host in ALLOWED_HOSTS, but not the one the desk was reached at
    (b"http://127.0.0.1:8000/path", False),
])
def test_8_the_websocket_accepts_only_its_own_scheme_host_and_port(origin, accepted):
    admin = get_user_model().objects.create_superuser("operator", password="pw-for-tests-1")
    assert ws_connect("/ws/stream/", session_headers(admin, b"127.0.0.1:8000", origin))[0] is accepted


@pytest.mark.django_db(transaction=True)
def test_8_an_origin_listed_in_csrf_trusted_origins_is_accepted_with_its_port():
    admin = get_user_model().objects.create_superuser("operator", password="pw-for-tests-1")
    with override_settings(CSRF_TRUSTED_ORIGINS=["https://desk.example:8443"]):
        assert ws_connect("/ws/stream/", session_headers(admin, b"127.0.0.1:8000", b"https://desk.example:8443"))[0]
        assert not ws_connect("/ws/stream/", session_headers(admin, b"127.0.0.1:8000", b"https://desk.example"))[0]


async def _close_code(comm, timeout_s: float):
    """The code of the close the server sends within `timeout_s` (events before it skipped)."""
    while True:
        message = await comm.receive_output(timeout=timeout_s)
        if message["type"] == "websocket.close":
            return message.get("code")


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("ending", ["token deleted", "user deactivated (token)", "user deactivated (session)",
                                    "session ended", "password changed"])
def test_9_an_open_socket_is_closed_once_its_credentials_no_longer_hold(ending):
    user = get_user_model().objects.create_user("script", password="pw-for-tests-1")
    token = Token.objects.create(user=user)
    by_session = "session" in ending or ending == "password changed"
    if by_session:
        headers = session_headers(user, b"localhost", b"http://localhost")
        path = "/ws/stream/"
    else:
        headers, path = [(b"origin", b"http://localhost")], f"/ws/stream/?token={token.key}"

    def end():
        if ending == "token deleted":
            token.delete()
        elif ending.startswith("user deactivated"):
            get_user_model().objects.filter(pk=user.pk).update(is_active=False)
        elif ending == "session ended":
            from django.contrib.sessions.models import Session

            Session.objects.all().delete()
        else:
            user.set_password("another-password-2")
            user.save()

    async def scenario():
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, _ = await comm.connect()
        assert connected
        await comm.receive_json_from(timeout=5)  # subscribed
        assert await comm.receive_nothing(timeout=0.7)  # still valid: stays open across re-checks
        await database_sync_to_async(end)()
        code = await _close_code(comm, 5)
        await comm.disconnect()
        return code

    with override_settings(STREAM_RECHECK_S=0.2):
        assert async_to_sync(scenario)() == 4401


def test_10_names_from_the_data_are_drawn_literally_in_the_report_charts(tmp_path):
    import copy

    from tests.execution.test_report_html import REPORT
    from execution.report_html import write_html_report

    report = copy.deepcopy(REPORT)
    report["per_route"][0]["route"] = r"arb:$\undefinedthing$:BTC/USDT"  # as mathtext: "Unknown symbol", no report
    report["per_route"][1]["route"] = r"fx:$\frac$:EUR/USD"
    written = write_html_report(report, tmp_path)
    assert (tmp_path / "pnl_by_route.png").read_bytes().startswith(b"\x89PNG") and len(written) == 5


@pytest.mark.django_db
@pytest.mark.parametrize("query", [
    "decided_at__year=99999999999", "decided_at__year=2024&decided_at__month=13",
    "decided_at__year=2024&decided_at__month=2&decided_at__day=99999999999999999999999",
    "id__exact=99999999999999999999", "q=" + "+".join(["word"] * 1100),
])
def test_10_admin_answers_400_to_filters_and_searches_the_database_cannot_run(query):
    admin = Client(raise_request_exception=False)
    admin.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    response = admin.get(f"/admin/decisions/decision/?{query}")
    assert response.status_code == 400 and b"Bad request" in response.content
    assert admin.get("/admin/decisions/decision/?decided_at__year=2024&q=EUR+USD").status_code == 200


class _InlineCode(HTMLParser):
    """Inline <script> code, inline <style> without a nonce, and style= / on*= attributes."""

    def __init__(self):
        super().__init__()
        self.found, self.nonces, self._in = [], [], None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self._in = None
        if tag == "script" and not attrs.get("src") and attrs.get("type") not in ("application/json", "text/template"):
            self._in = "script"
        if tag == "style":
            self.nonces.append(attrs.get("nonce"))
        self.found += [f"{tag} {name}=" for name in attrs if name == "style" or name.startswith("on")]

    def handle_data(self, data):
        if self._in == "script" and data.strip():
            self.found.append("inline script")

    def handle_endtag(self, tag):
        self._in = None


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/", "/admin/", "/admin/decisions/controls/", "/admin/login/", "/api/docs/",
                                  "/api/controls/?format=api"])
def test_10_pages_carry_a_content_security_policy_their_own_markup_keeps_to(path):
    """The dashboard, admin (a settings form included), Swagger UI and the browsable API: no
    inline script or style attribute the policy would block; an inline <style> has the nonce.
    The browsable API's one exception, Pygments' <style> for code highlighting, is cosmetic."""
    client = Client()
    if path != "/admin/login/":
        client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    response = client.get(path, HTTP_ACCEPT="text/html", follow=True)
    assert response.status_code == 200, path
    policy = dict(part.strip().split(" ", 1) for part in response["Content-Security-Policy"].split(";") if part.strip())
    assert policy["script-src"] == "'self'" and "'unsafe-inline'" not in policy["style-src"]
    assert policy["object-src"] == "'none'" and policy["frame-ancestors"] == "'none'"
    page = _InlineCode()
    page.feed(response.content.decode())
    assert page.found == [], (path, page.found)
    nonce = re.search(r"'nonce-([^']+)'", policy["style-src"])
    if "format=api" not in path:
        assert all(n is not None and nonce and n == nonce.group(1) for n in page.nonces), (path, page.nonces)


@pytest.mark.django_db
def test_10_the_api_docs_script_is_served_apart_from_the_page():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    page = client.get("/api/docs/").content.decode()
    script = re.search(r'<script src="(/api/docs/\?[^"]*script[^"]*)"', page).group(1).replace("&amp;", "&")
    response = client.get(script)
    assert response.status_code == 200 and "SwaggerUIBundle" in response.content.decode()


@pytest.mark.django_db
def test_10_the_csrf_cookie_is_httponly_and_the_dashboard_takes_the_token_from_the_page():
    client = Client()
    client.force_login(get_user_model().objects.create_superuser("operator", password="pw-for-tests-1"))
    response = client.get("/")
    assert client.cookies["csrftoken"]["httponly"] is True
    assert re.search(r'<meta name="csrf-token" content="[^"]+">', response.content.decode())
    desk_js = (ROOT / "trifecta_site" / "static" / "trifecta" / "desk.js").read_text()
    assert "document.cookie" not in desk_js and 'meta[name="csrf-token"]' in desk_js
