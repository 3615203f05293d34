"""Signals decided but not traded are watched to their outcome, and the agents learn from it once."""
from decimal import Decimal as D

import pytest

from decisions.agents import GLOBAL, BinaryAgent, ForexAgent
from decisions.models import AgentState, Decision
from execution.models import ExecutionSettings, SignalWatch
from execution.signals import watch_signals
from scanners.models import Opportunity
from tests.factories import opportunity
from trifecta_site.clock import ms_to_datetime

from .recorded import recorded_market
from .test_executors import FOREX, T0, realism

pytestmark = pytest.mark.django_db


def decided(kind, figures, *, verdict="skip", direction="", route="r", probability=D("0.2")) -> Opportunity:
    """An opportunity the governor decided at T0 (`verdict`), not traded."""
    opp = opportunity(kind, figures, direction=direction, route=route, status=Opportunity.REJECTED,
                      probability=probability)
    Decision.objects.create(opportunity=opp, layer=Decision.GOVERNOR, verdict=verdict, decided_at=ms_to_datetime(T0),
                            market_ts=T0)
    return opp


def counts(agent: str, key: str) -> tuple[int, int]:
    state = AgentState.objects.filter(agent=agent, key=key).first()
    return (state.wins, state.losses) if state else (0, 0)


def test_a_skipped_forex_signal_is_watched_to_its_target_and_taught_once(tmp_path):
    """BUY EUR/USD entered at the ask 1.1002 (T0 + latency 0, optimistic), target 1.1030: the
    bid reaches 1.1031 at T0 + 60 s, so the watch settles take_profit and the forex agent
    counts one win for the signal, the pair and the kind; later passes teach nothing more."""
    realism("optimistic")
    feed = recorded_market(tmp_path / "m", venues={"fx": ("forex", "0")}, at=T0, quotes=[
        ("fx", "EUR/USD", T0, "1.1000", "1.1002"), ("fx", "EUR/USD", T0 + 30_000, "1.1010", "1.1012"),
        ("fx", "EUR/USD", T0 + 60_000, "1.1031", "1.1033")])
    opp = decided("forex", {**FOREX, "prior_probability": "0.3"}, direction="BUY", route="fx:fx:EUR/USD")

    assert watch_signals(feed=feed, now=T0, settings=realism_settings()) == {"watches_started": 1, "watches_settled": 0}
    watch = SignalWatch.objects.get(opportunity=opp)
    assert (watch.entry_price, watch.stop_loss, watch.take_profit, watch.status, watch.counted) == (
        D("1.1002"), D("1.0990"), D("1.1030"), SignalWatch.OPEN, True)

    feed.at(T0 + 30_000)
    assert watch_signals(feed=feed, now=T0 + 30_000, settings=realism_settings())["watches_settled"] == 0
    feed.at(T0 + 60_000)
    assert watch_signals(feed=feed, now=T0 + 60_000, settings=realism_settings())["watches_settled"] == 1
    watch.refresh_from_db()
    assert (watch.status, watch.outcome, watch.won, watch.settled_ts) == (SignalWatch.SETTLED, "take_profit", True, T0 + 60_000)
    signal_key, pair_key = ForexAgent.keys("EUR/USD", "BUY")
    for key in (signal_key, pair_key, GLOBAL):
        assert counts(AgentState.FOREX, key) == (1, 0)
    assert AgentState.objects.get(agent=AgentState.FOREX, key=GLOBAL).expected_sum == D("0.3")  # against its prior

    assert watch_signals(feed=feed, now=T0 + 60_000, settings=realism_settings()) == {"watches_started": 0, "watches_settled": 0}
    assert counts(AgentState.FOREX, GLOBAL) == (1, 0)


def test_a_signal_entered_while_a_counted_one_is_open_is_recorded_but_not_followed(tmp_path):
    """Two BUY EUR/USD signals a second apart are one market move: the first watch is counted,
    the second is recorded as overlapped (not followed) and the agent learns one outcome. A SELL
    is another window."""
    realism("optimistic")
    feed = recorded_market(tmp_path / "m", venues={"fx": ("forex", "0")}, at=T0, quotes=[
        ("fx", "EUR/USD", T0, "1.1000", "1.1002"), ("fx", "EUR/USD", T0 + 60_000, "1.1031", "1.1033")])
    first, second = (decided("forex", FOREX, direction="BUY") for _ in range(2))
    sell = decided("forex", {**FOREX, "signal": "SELL", "stop_loss": "1.1030", "take_profit": "1.0950"}, direction="SELL")
    watch_signals(feed=feed, now=T0, settings=realism_settings())
    assert dict(SignalWatch.objects.values_list("opportunity_id", "counted")) == {first.pk: True, second.pk: False, sell.pk: True}
    assert SignalWatch.objects.get(opportunity=second).status == SignalWatch.SETTLED
    feed.at(T0 + 60_000)
    assert watch_signals(feed=feed, now=T0 + 60_000, settings=realism_settings())["watches_settled"] == 2
    assert sorted(SignalWatch.objects.values_list("direction", "outcome")) == [
        ("BUY", "overlapped"), ("BUY", "take_profit"), ("SELL", "stop_loss")]
    assert counts(AgentState.FOREX, ForexAgent.keys("EUR/USD", "BUY")[0]) == (1, 0)
    assert counts(AgentState.FOREX, GLOBAL) == (1, 1)


def test_an_approved_signal_is_left_to_its_trade_and_a_signal_without_entry_teaches_nothing(tmp_path):
    """The governor's `execute` is a trade's to learn from; a skipped signal whose entry price is
    stale at fill time (last quote 10 s old, max age 5 s) is settled as such, unlearned."""
    realism("optimistic", max_quote_age_ms=5000)
    feed = recorded_market(tmp_path / "m", venues={"fx": ("forex", "0")}, at=T0 + 10_000,
                           quotes=[("fx", "EUR/USD", T0, "1.1000", "1.1002")])
    decided("forex", FOREX, verdict="execute", direction="BUY")
    stale = decided("forex", FOREX, direction="BUY")
    Decision.objects.filter(opportunity=stale).update(market_ts=T0 + 10_000)

    assert watch_signals(feed=feed, now=T0 + 10_000, settings=realism_settings())["watches_started"] == 1
    watch = SignalWatch.objects.get()
    assert (watch.opportunity_id, watch.status, watch.outcome) == (stale.pk, SignalWatch.SETTLED, "stale_price")
    assert not AgentState.objects.exists()


def test_skipped_binaries_settle_on_the_last_price_before_expiry(tmp_path):
    """CALL entered at mid 101; the last price before expiry (T0 + 60 s) is 102: a win for the
    binary agent. A PUT on the same entry and the same settle loses."""
    realism("optimistic")
    feed = recorded_market(tmp_path / "m", venues={"b": ("crypto", "0.001")}, at=T0, quotes=[
        ("b", "BTC/USDT", T0, "100.9", "101.1"), ("b", "BTC/USDT", T0 + 50_000, "101.9", "102.1"),
        ("b", "BTC/USDT", T0 + 130_000, "101.9", "102.1")])
    binary = {"symbol": "BTC/USDT", "venue": "b", "expiry_s": "60", "probability": "0.8", "payout": "0.85",
              "entry_price": "101"}
    decided("binary", {**binary, "direction": "CALL"}, direction="CALL")
    decided("binary", {**binary, "direction": "PUT"}, direction="PUT")
    assert watch_signals(feed=feed, now=T0, settings=realism_settings())["watches_started"] == 2
    feed.at(T0 + 130_000)
    assert watch_signals(feed=feed, now=T0 + 130_000, settings=realism_settings())["watches_settled"] == 2
    assert sorted(SignalWatch.objects.values_list("direction", "outcome", "won")) == [("CALL", "win", True), ("PUT", "loss", False)]
    assert counts(AgentState.BINARY, BinaryAgent.key("BTC/USDT", "CALL", 60)) == (1, 0)
    assert counts(AgentState.BINARY, BinaryAgent.key("BTC/USDT", "PUT", 60)) == (0, 1)
    assert counts(AgentState.BINARY, GLOBAL) == (1, 1)


def realism_settings():
    return ExecutionSettings.get_solo()
