"""CSV exports (docs/export.md): the lists' filters, the columns, admin's action, and a
100,000-row export streamed through the ASGI server's path in flat memory."""
import asyncio
import csv
import gc
import io
import tracemalloc
from decimal import Decimal as D

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.asgi import get_asgi_application
from django.http import StreamingHttpResponse
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.exports import DECISION_HEADER
from decisions.models import Decision
from execution.exports import TRADE_HEADER
from execution.models import Fill, Position, Trade
from scanners.exports import OPPORTUNITIES, OPPORTUNITY_HEADER
from scanners.models import Opportunity
from trifecta_site.clock import ms_to_datetime

from ..factories import T0, approve, opportunity, trade
from .test_api import client_for

MINUTE = 60_000
HEADERS = {"/api/trades/": TRADE_HEADER, "/api/opportunities/": OPPORTUNITY_HEADER, "/api/decisions/": DECISION_HEADER}


def read_csv(response) -> list[list[str]]:
    assert response.status_code == 200, response.content
    assert isinstance(response, StreamingHttpResponse) and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def listed_ids(api, path: str, query: str) -> list[int]:
    body = api.get(f"{path}?{query}").json()
    assert body["next"] is None
    return [row["id"] for row in body["results"]]


@pytest.fixture
def desk(db):
    """Arbitrage and forex opportunities a minute apart, each decided, half of them traded (two legs each)."""
    for k in range(12):
        kind, symbol = ("arbitrage", "BTC/USDT") if k % 2 else ("forex", "EUR/USD")
        opp = opportunity(kind, {"symbol": symbol}, route=f"route-{k}", ts=T0 + k * MINUTE,
                          status=Opportunity.EXECUTED if k % 3 else Opportunity.REJECTED)
        approve(opp)
        if k % 3:
            t = trade(opp, status=Trade.CLOSED if k % 4 else Trade.OPEN, size_usd=D("1000.25"), realized_pnl=D("-1.5"))
            for leg in (1, 2):
                Fill.objects.create(trade=t, leg=leg, venue=f"venue-{leg}", symbol=symbol, side="buy", requested=D("0.5"),
                                    quantity=D("0.5"), price=D("37000.1"), notional=D("18500.05"), filled_ts=opp.market_ts)


@pytest.mark.parametrize("path, query", [
    ("/api/trades/", ""),
    ("/api/trades/", "kind=forex"),
    ("/api/trades/", f"status=closed&since={T0 + 3 * MINUTE}&until={T0 + 10 * MINUTE}"),
    ("/api/trades/", "symbol=EUR/USD&status=open"),
    ("/api/opportunities/", ""),
    ("/api/opportunities/", f"kind=arbitrage&status=executed&since={T0 + 2 * MINUTE}"),
    ("/api/opportunities/", "symbol=EUR/USD&status=rejected"),
    ("/api/decisions/", "layer=risk"),
    ("/api/decisions/", "verdict=execute"),
])
def test_an_export_holds_the_lists_rows_in_its_order(desk, path, query):
    api = client_for(staff=False)
    rows = read_csv(api.get(f"{path}export/?{query}"))
    if path == "/api/decisions/":  # a layer's verdicts: one opportunity's too
        opp = Opportunity.objects.order_by("id")[3].pk
        assert [int(r[0]) for r in read_csv(api.get(f"{path}export/?opportunity={opp}"))[1:]] == \
            listed_ids(api, path, f"opportunity={opp}")
    assert rows[0] == list(HEADERS[path])
    assert [int(row[0]) for row in rows[1:]] == listed_ids(api, path, query)
    everything = {"/api/trades/": 8, "/api/opportunities/": 12, "/api/decisions/": 36}[path]
    assert 0 < len(rows) - 1 < everything if query else len(rows) - 1 == everything


def test_a_trade_is_one_row_with_its_legs_money_in_full_and_times_in_utc(db):
    opp = opportunity("forex", {"symbol": "=cmd|' /C calc'!A0"}, route="r", ts=T0)
    t = trade(opp, status=Trade.CLOSED, size_usd=D("0"), fees_usd=D("0.0000000001"), realized_pnl=D("-12.5"),
              closed_ts=T0 + MINUTE, closed_at=ms_to_datetime(T0 + MINUTE),
              edge={"latency_move": "-0.25", "depth_slippage": "0", "fees": "-1.5", "size_and_leg_risk": "0.01"})
    Position.objects.create(trade=t, kind="forex", venue="oanda", symbol="EUR/USD", direction="BUY", quantity=D("1000"),
                            entry_price=D("1.08"), exit_price=D("1.07"), stop_loss=D("1.07"), opened_ts=T0, checked_ts=T0,
                            status=Position.CLOSED, close_reason="stop_loss")
    Fill.objects.create(trade=t, leg=1, venue="oanda", symbol="EUR/USD", side="buy", requested=D("1000"), quantity=D("1000"),
                        price=D("1.08"), notional=D("1080"), fee=D("0"), filled_ts=T0 + 250)
    trade(opportunity("arbitrage", {}, route="refused", ts=T0 - MINUTE), status=Trade.REJECTED, reject_reason="STALE_BOOK",
          edge={"rejected": "STALE_BOOK", "fees": "n/a"})
    header, row, refused = read_csv(client_for(staff=False).get("/api/trades/export/"))
    assert header == list(TRADE_HEADER)
    got, refused = dict(zip(header, row)), dict(zip(header, refused))
    assert (refused["status"], refused["reject_reason"], refused["legs"], refused["leg1_venue"], refused["edge_fees"]) == (
        "rejected", "STALE_BOOK", "0", "", "n/a")
    assert got["symbol"].startswith("'=")  # a spreadsheet shows it, never runs it
    assert (got["size_usd"], got["fees_usd"], got["realized_pnl"]) == ("0.0000000000", "0.0000000001", "-12.5000000000")
    assert (got["opened_at"], got["closed_at"], got["leg1_filled_at"]) == (
        "2023-11-14T22:13:20.000Z", "2023-11-14T22:14:20.000Z", "2023-11-14T22:13:20.250Z")
    assert (got["close_reason"], got["exit_price"], got["edge_latency_move"], got["legs"]) == ("stop_loss", "1.0700000000", "-0.25", "1")
    assert (got["leg1_venue"], got["leg1_price"], got["leg2_venue"], got["leg3_price"]) == ("oanda", "1.0800000000", "", "")


@pytest.mark.parametrize("path, query, field", [
    ("/api/trades/export/", "since=yesterday", "since"),
    ("/api/opportunities/export/", "until=99999999999999999999", "until"),
    ("/api/opportunities/export/", "symbol=BTC%00", "symbol"),
    ("/api/decisions/export/", "opportunity=first", "opportunity"),
])
def test_a_bad_filter_is_a_400_naming_it(db, path, query, field):
    response = client_for(staff=False).get(f"{path}?{query}")
    assert response.status_code == 400 and field in response.json()


@pytest.mark.parametrize("path", ["/api/trades/export/", "/api/opportunities/export/", "/api/decisions/export/"])
def test_an_export_needs_credentials_like_its_list(db, path):
    assert APIClient().get(path).status_code == 401


@pytest.mark.parametrize("changelist, model, name", [
    ("/admin/execution/trade/", Trade, "trades"),
    ("/admin/decisions/decision/", Decision, "decisions"),
    ("/admin/scanners/opportunity/", Opportunity, "opportunities"),
])
def test_admin_exports_the_selected_rows_for_whoever_may_view_them(desk, client, changelist, model, name):
    user = get_user_model().objects.create_user("auditor", password="pw-for-tests-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename=f"view_{model._meta.model_name}"))
    client.force_login(user)
    chosen = list(model.objects.order_by("id").values_list("id", flat=True)[1:4])
    response = client.post(changelist, {"action": "export_csv", "_selected_action": chosen})
    rows = read_csv(response)
    assert response["Content-Disposition"] == f'attachment; filename="{name}.csv"'
    assert rows[0] == list(HEADERS[f"/api/{name}/"]) and sorted(int(r[0]) for r in rows[1:]) == chosen


def bulk_opportunities(count: int) -> None:
    """`count` arbitrage opportunities a second apart from T0 and one forex one, written a batch at a time."""
    rows = (Opportunity(kind="forex" if k == count else "arbitrage", symbol="BTC/USDT", venues=["binance", "kraken"],
                        route=f"route-{k}", rank=1, risk_score=D("12.5"), net_pct=D("0.61234567"),
                        expected_profit_usd=D("61.2345678901"), observed_at=ms_to_datetime(T0 + k * 1000),
                        market_ts=T0 + k * 1000, detected_at=ms_to_datetime(T0 + k * 1000)) for k in range(count + 1))
    Opportunity.objects.bulk_create(rows, batch_size=5000)


def asgi_get(path: str, token: str, on_body) -> int:
    """GET `path` through Django's ASGI handler (what uvicorn serves), handing each body message to `on_body`."""
    status, asked = [], []

    async def receive():
        if not asked:
            asked.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays until the response is done
        return {"type": "http.disconnect"}

    async def send(message):
        if message["type"] == "http.response.start":
            status.append(message["status"])
        else:
            on_body(message.get("body", b""))

    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    async_to_sync(get_asgi_application())(scope, receive, send)
    return status[0]


def traced_peak(path: str, token: str) -> dict:
    """The most memory Python held while `path` was exported through the ASGI handler, and what was sent."""
    seen = {"bytes": 0, "lines": 0, "messages": 0, "head": b""}

    def on_body(body: bytes) -> None:  # counts and forgets: holding the body would be the memory measured
        seen["bytes"] += len(body)
        seen["lines"] += body.count(b"\r\n")
        seen["messages"] += bool(body)
        seen["head"] = seen["head"] or body[:2000]

    gc.collect()
    tracemalloc.start()
    try:
        seen["status"] = asgi_get(path, token, on_body)
        seen["peak"] = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return seen


@pytest.mark.django_db(transaction=True)  # the ASGI handler reads in a thread of its own: the rows must be committed
def test_a_100000_row_export_streams_through_asgi_in_flat_memory():
    rows = 100_000
    bulk_opportunities(rows)
    token = Token.objects.create(user=get_user_model().objects.create_user("analyst", password="pw-for-tests-1")).key
    traced_peak("/api/opportunities/export/?kind=forex", token)  # the first request's one-off allocations
    tenth = traced_peak(f"/api/opportunities/export/?kind=arbitrage&since={T0 + (rows - rows // 10) * 1000}", token)
    whole = traced_peak("/api/opportunities/export/?kind=arbitrage", token)
    assert (tenth["status"], whole["status"]) == (200, 200)
    assert (tenth["lines"], whole["lines"]) == (rows // 10 + 1, rows + 1)
    assert whole["head"].decode().split("\r\n")[0] == ",".join(OPPORTUNITY_HEADER)
    assert whole["messages"] > 10  # sent as it was read, not as one body
    # Flat: ten times the rows and no more memory (a block of rows at a time), far below what
    # holding the rows as read would take, and below even the CSV text sent.
    assert whole["peak"] < 1.5 * tenth["peak"], (tenth["peak"], whole["peak"])
    assert whole["peak"] < held_by(rows) / 20, (whole["peak"], held_by(rows))
    assert whole["peak"] < whole["bytes"] / 5, (whole["peak"], whole["bytes"])


def held_by(rows: int) -> int:
    """What `rows` opportunities take held in memory as the export reads them (a tenth measured, times ten)."""
    gc.collect()
    tracemalloc.start()
    try:
        held = list(OPPORTUNITIES.values(Opportunity.objects.order_by("id")[:rows // 10]))
        size = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(held) == rows // 10
    return size * 10
