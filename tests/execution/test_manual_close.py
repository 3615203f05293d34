"""Closing a position by hand (service, API, admin) with numbers to check by hand: the close fills
at the executable side of the quote in force, with its evidence on the fill and who and why in the
audit row; never twice, never on a stale price, never early for a binary."""
import threading
from decimal import Decimal as D

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection, connections
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from decisions.models import AgentState, RiskDay
from execution.closing import AlreadyClosed, NoExecutablePrice, NotClosable, close_position
from execution.models import Fill, ManualClose, Position, Trade
from execution.monitor import monitor_positions
from execution.portfolio import cash_account, current_portfolio
from scanners.feeds import reset_current_feed
from scanners.feeds.base import wall_ms
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed

from .recorded import recorded_market
from .test_executors import FOREX, T0, forex_market, open_forex, opportunity, realism
from .test_executors import executors

pytestmark = pytest.mark.django_db
SHORT = {**FOREX, "signal": "SELL", "entry": "1.1000", "stop_loss": "1.1020", "take_profit": "1.0970"}


def operator(*codenames, name="operator"):
    user = get_user_model().objects.create_user(name, password="pw-for-tests-1", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=codenames))
    return get_user_model().objects.get(pk=user.pk)


def test_a_long_closes_at_the_bid_with_its_evidence_and_audit_row(tmp_path):
    """Long 10,000 EUR/USD at the ask 1.1002 (T0). At T0 + 3 s the quote is 1.1010 / 1.1012: the
    close sells at the bid 1.1010, +0.0008 × 10,000 = +8.00 USD; the quote is 3,000 − 1,000 = 2,000 ms old."""
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 1000, "1.1010", "1.1012")])
    trade = open_forex(feed)
    user = operator("change_position")
    position = close_position(position_id=Position.objects.get(trade=trade).pk, feed=feed.at(T0 + 3000), by=user,
                              reason="news at 14:30")
    position.refresh_from_db()
    assert (position.status, position.close_reason, position.exit_price) == ("closed", "manual", D("1.1010"))
    assert (position.realized_pnl, position.closed_ts) == (D("8"), T0 + 3000)
    trade.refresh_from_db()
    assert (trade.status, trade.realized_pnl) == (Trade.CLOSED, D("8"))
    fill = Fill.objects.get(trade=trade, leg=2)
    assert (fill.side, fill.quantity, fill.price, fill.notional, fill.fee) == ("sell", D("10000"), D("1.1010"), D("11010"), 0)
    assert fill.evidence["quote_age_ms"] == 2000 and fill.evidence["quote_ts"] == T0 + 1000
    assert (fill.evidence["bid"], fill.evidence["ask"], fill.evidence["max_age_ms"]) == ("1.1010", "1.1012", 5000)
    audit = ManualClose.objects.get()
    assert (audit.position_id, audit.fill_id, audit.closed_by, audit.reason) == (position.pk, fill.pk, user, "news at 14:30")
    cash = cash_account(current_portfolio())
    assert (cash.total, cash.reserved) == (D("100008"), 0)
    assert RiskDay.objects.get().realized_pnl == 8  # the risk day counts it
    assert not AgentState.objects.exists()  # the agent does not learn from it (docs/operator.md)


def test_a_short_closes_at_the_ask(tmp_path):
    """Short 10,000 at the bid 1.1000 (T0); the ask at the close is 1.0992: +0.0008 × 10,000 = +8.00 USD."""
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 1000, "1.0990", "1.0992")])
    opp = opportunity("forex", SHORT, route="fx:fx:EUR/USD", direction="SELL")
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("11000"), decided_ts=T0)
    position = close_position(position_id=trade.position.pk, feed=feed.at(T0 + 1000))
    assert (position.exit_price, position.realized_pnl) == (D("1.0992"), D("8"))
    assert Fill.objects.get(trade=trade, leg=2).side == "buy"


def test_a_closed_position_is_refused_and_nothing_changes(tmp_path):
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 1000, "1.1010", "1.1012")])
    position = Position.objects.get(trade=open_forex(feed))
    close_position(position_id=position.pk, feed=feed.at(T0 + 1000))
    with pytest.raises(AlreadyClosed, match="already closed \\(manual at 1.1010"):
        close_position(position_id=position.pk, feed=feed)
    assert (Fill.objects.filter(trade=position.trade).count(), ManualClose.objects.count()) == (2, 1)
    assert cash_account(current_portfolio()).total == D("100008")


def test_no_close_on_a_stale_price(tmp_path):
    """The latest quote is from T0; at T0 + 60 s it is 60,000 ms old (max 5,000): refused, still open."""
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 120_000, "1.1010", "1.1012")])
    position = Position.objects.get(trade=open_forex(feed))
    with pytest.raises(NoExecutablePrice, match="60000 ms old \\(at most 5000 ms\\)"):
        close_position(position_id=position.pk, feed=feed.at(T0 + 60_000))
    position.refresh_from_db()
    assert position.status == Position.OPEN and not ManualClose.objects.exists()
    assert Fill.objects.filter(trade=position.trade).count() == 1


def test_a_binary_is_not_closed_early(tmp_path):
    realism("optimistic")
    feed = recorded_market(tmp_path, venues={"b": ("crypto", "0.001")}, quotes=[("b", "BTC/USDT", T0, "100.9", "101.1")])
    opp = opportunity("binary", {"symbol": "BTC/USDT", "venue": "b", "direction": "CALL", "expiry_s": "60",
                                 "probability": "0.8", "payout": "0.85", "entry_price": "101"}, direction="CALL")
    trade = executors.execute_opportunity(opportunity_id=opp.pk, feed=feed, size_usd=D("10"), decided_ts=T0)
    with pytest.raises(NotClosable, match="settles at its expiry"):
        close_position(position_id=trade.position.pk, feed=feed)
    assert Position.objects.get().status == Position.OPEN


def test_the_monitor_does_not_close_a_manually_closed_position_again(tmp_path):
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 5000, "1.0985", "1.0987")])  # through the stop
    position = Position.objects.get(trade=open_forex(feed))
    close_position(position_id=position.pk, feed=feed.at(T0 + 1000))
    assert monitor_positions(feed=feed.at(T0 + 5000)) == {}
    position.refresh_from_db()
    assert (position.close_reason, position.realized_pnl) == ("manual", D("-2"))  # at the bid 1.1000 of T0


# --- the API ---------------------------------------------------------------------------------


@pytest.fixture
def desk_replay(tmp_path, settings, monkeypatch):
    """The web process's feed: a recording replayed in real time, its clock `behind_ms` past its start."""
    def start(quotes, behind_ms: int):
        feed = recorded_market(tmp_path / "market", venues={"fx": ("forex", "0")}, at=T0,
                               quotes=[("fx", "EUR/USD", T0, "1.1000", "1.1002"), *quotes,
                                       ("fx", "EUR/USD", T0 + 36_000_000, "1.2000", "1.2002")])
        settings.TRIFECTA_FEED, settings.TRIFECTA_RECORDING = "replay", str(tmp_path / "market")
        monkeypatch.setenv("TRIFECTA_REPLAY_ANCHOR_MS", str(wall_ms() - behind_ms))
        reset_current_feed()
        return feed

    yield start
    reset_current_feed()


def api_as(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def test_the_api_closes_at_the_bid_and_refuses_a_second_close(desk_replay):
    """Entry at the ask 1.1002; at T0 + 1 s the bid is 1.1006: +0.0004 × 10,000 = +4.00 USD."""
    realism("optimistic", max_quote_age_ms=3_600_000)
    feed = desk_replay([("fx", "EUR/USD", T0 + 1000, "1.1006", "1.1008")], behind_ms=2000)
    position = Position.objects.get(trade=open_forex(feed))
    client = api_as(operator("change_position"))
    response = client.post(f"/api/positions/{position.pk}/close/", {"reason": "flat before the weekend"}, format="json")
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["exit_price"], response.json()["realized_pnl"]) == (
        "closed", "1.1006000000", "4.0000000000")
    assert ManualClose.objects.get().reason == "flat before the weekend"
    again = client.post(f"/api/positions/{position.pk}/close/", {}, format="json")
    assert again.status_code == 409 and "already closed" in again.json()["detail"]
    assert client.post("/api/positions/999999/close/", {}, format="json").status_code == 404
    assert client.post(f"/api/positions/{position.pk}/close/", {"reason": "x" * 301}, format="json").status_code == 400


def test_the_api_refuses_a_stale_price_with_a_clear_message(desk_replay):
    realism("optimistic")
    feed = desk_replay([], behind_ms=3_600_000)  # the desk's clock an hour on: the T0 quote is an hour old
    position = Position.objects.get(trade=open_forex(feed))
    response = api_as(operator("change_position")).post(f"/api/positions/{position.pk}/close/", {}, format="json")
    assert response.status_code == 409 and "no close on a stale price" in response.json()["detail"]
    assert Position.objects.get().status == Position.OPEN


def test_closing_needs_the_change_position_permission(desk_replay):
    realism("optimistic", max_quote_age_ms=3_600_000)
    feed = desk_replay([], behind_ms=1000)
    position = Position.objects.get(trade=open_forex(feed))
    viewer = operator("view_position", name="viewer")
    assert api_as(viewer).post(f"/api/positions/{position.pk}/close/", {}, format="json").status_code == 403
    assert Position.objects.get().status == Position.OPEN


def test_the_admin_action_asks_why_then_closes(desk_replay, client):
    realism("optimistic", max_quote_age_ms=3_600_000)
    feed = desk_replay([], behind_ms=1000)
    position = Position.objects.get(trade=open_forex(feed))
    admin_user = get_user_model().objects.create_superuser("boss", password="pw-for-tests-1")
    client.force_login(admin_user)
    form = {"action": "close_now", "_selected_action": [position.pk], "index": 0}
    asked = client.post("/admin/execution/position/", form)
    assert asked.status_code == 200 and b"Why:" in asked.content
    assert Position.objects.get().status == Position.OPEN
    done = client.post("/admin/execution/position/", {"action": "close_now", "_selected_action": [position.pk],
                                                      "confirmed": "yes", "reason": "risk review"}, follow=True)
    assert done.status_code == 200
    position.refresh_from_db()
    assert (position.status, position.exit_price) == ("closed", D("1.1000"))
    assert (ManualClose.objects.get().closed_by, ManualClose.objects.get().reason) == (admin_user, "risk review")


# --- exactly once against a concurrent close -----------------------------------------------------


def at_once(recording, *actions) -> list:
    """Each action in a thread of its own (its own database connection and feed on `recording`),
    all let go at the same instant; what each returned."""
    barrier, outcomes = threading.Barrier(len(actions)), []

    def run(action):
        try:
            own_feed = ReplayFeed(RecordingReader(recording), ReplayClock.stepped(T0 + 1000))
            barrier.wait()
            outcomes.append(action(own_feed))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(action,)) for action in actions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


@pytest.mark.django_db(transaction=True)
def test_two_closes_at_once_close_exactly_once(tmp_path):
    """Two threads (two database connections) close the same position at the same moment: one
    closes, the other is refused; one closing fill, one audit row, the P&L booked once."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections: run on PostgreSQL (DATABASE_URL)")
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 1000, "1.1010", "1.1012")])
    position = Position.objects.get(trade=open_forex(feed))

    def close(own_feed):
        try:
            close_position(position_id=position.pk, feed=own_feed)
            return "closed"
        except AlreadyClosed:
            return "refused"

    outcomes = at_once(tmp_path, close, close)
    assert sorted(outcomes) == ["closed", "refused"]
    assert (ManualClose.objects.count(), Fill.objects.filter(trade=position.trade).count()) == (1, 2)
    assert cash_account(current_portfolio()).total == D("100008")


@pytest.mark.django_db(transaction=True)
def test_a_close_racing_the_monitor_closes_exactly_once(tmp_path):
    """The monitor stops the position out (the quote crossed the stop) while an operator closes it:
    whichever locks the row first closes it, the other leaves it; one close, booked once."""
    if connection.vendor != "postgresql":
        pytest.skip("row locks across connections: run on PostgreSQL (DATABASE_URL)")
    realism("optimistic")
    feed = forex_market(tmp_path, quotes=[("fx", "EUR/USD", T0 + 1000, "1.0985", "1.0987")])
    position = Position.objects.get(trade=open_forex(feed))

    def by_hand(own_feed):
        try:
            close_position(position_id=position.pk, feed=own_feed)
            return "manual"
        except AlreadyClosed:
            return "refused"

    outcomes = at_once(tmp_path, by_hand, lambda own_feed: monitor_positions(feed=own_feed))
    position.refresh_from_db()
    closes = {"manual": 1, "stop_loss": 1}
    assert sum(outcome.get("stop_loss", 0) if isinstance(outcome, dict) else outcome == "manual" for outcome in outcomes) == 1
    assert position.close_reason in closes and position.realized_pnl == D("-17")  # at the bid 1.0985 either way
    assert ManualClose.objects.count() == (position.close_reason == "manual")
    assert cash_account(current_portfolio()).total == D("100000") - 17
    assert RiskDay.objects.get().realized_loss == 17
