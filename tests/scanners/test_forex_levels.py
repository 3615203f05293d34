"""Forex levels that mean something: executable entry, stops clear of the spread, R/R from the levels."""
from datetime import datetime, timezone
from decimal import Decimal

from scanners.feeds.base import Bar, Instrument
from scanners.forex import ForexThresholds, aggregate_bars, bar_only_spread, scan_forex, source_timeframe

from .market import D, MemoryMarket

NOW = int(datetime(2024, 3, 5, 12, 0, tzinfo=timezone.utc).timestamp() * 1000)  # a Tuesday
ANY = dict(min_confidence=D(0), min_risk_reward=D(0), timeframe="1m", target_atr_multiple=D(3))


def steady_market(direction=1, spread=None, symbol="EUR/USD", start_price="1.10000", step="0.00010"):
    """80 one-minute bid bars moving `step` a bar, each reaching half a step beyond its open and close:
    every true range is exactly 2 steps, so ATR(14) = 0.00020 for the default step."""
    market = MemoryMarket(NOW, fees={"broker": "0"}, asset_class="forex")
    price, move = D(start_price), D(step) * direction
    bars = []
    for i in range(80):
        close = price + move
        high, low = max(price, close) + abs(move) / 2, min(price, close) - abs(move) / 2
        bars.append(Bar(NOW - (80 - i) * 60_000, price, high, low, close))
        price = close
    market.bar_series[("broker", symbol, "1m")] = bars
    if spread is not None:
        market.set_quote("broker", symbol, str(price), str(price + D(spread)))
    market.instruments = lambda: [Instrument("broker", symbol, "forex", has_quotes=spread is not None, timeframes=("1m",))]
    return market, price


def only(result):
    [candidate] = result.candidates
    return candidate.figures


def test_a_buy_enters_at_the_ask_and_its_levels_sit_at_the_bid_with_the_spread_in_the_risk_reward():
    market, bid = steady_market(1, spread="0.00002")
    f = only(scan_forex(market, now=NOW, thresholds=ForexThresholds(**ANY)))
    assert f["signal"] == "BUY" and f["indicators"]["atr"] == D("0.0002")
    assert f["entry"] == bid + D("0.00002")  # the ask
    assert f["stop_loss"] == bid - D("0.00030")  # 1.5 ATR under the bid it would close at
    assert f["take_profit"] == bid + D("0.00060")  # 3 ATR over it
    # risk 0.00030 + 0.00002 = 0.00032, reward 0.00060 − 0.00002 = 0.00058: 1.8125, not the 2.0 of the multiples
    assert f["risk_reward"] == D("1.812")
    assert f["spread"] == D("0.00002") and f["spread_from"] == "quote" and f["stop_from"] == "atr"
    assert f["stop_spreads"] == D("16.00")  # 0.00032 / 0.00002


def test_a_sell_mirrors_it_at_the_bid_with_levels_at_the_ask():
    market, bid = steady_market(-1, spread="0.00002")
    f = only(scan_forex(market, now=NOW, thresholds=ForexThresholds(**ANY)))
    ask = bid + D("0.00002")
    assert f["signal"] == "SELL" and f["entry"] == bid
    assert f["stop_loss"] == ask + D("0.00030") and f["take_profit"] == ask - D("0.00060")
    assert f["risk_reward"] == D("1.812")


def test_a_stop_nearer_than_three_spreads_is_moved_out_and_the_risk_reward_minimum_then_filters():
    market, bid = steady_market(1, spread="0.00020")  # a 2-pip spread against a 2-pip ATR
    f = only(scan_forex(market, now=NOW, thresholds=ForexThresholds(**ANY)))
    entry = bid + D("0.00020")
    # the ATR stop would be 0.00030 + 0.00020 = 0.00050 from the entry, under 3 × 0.00020 = 0.00060
    assert f["entry"] == entry and f["stop_loss"] == entry - D("0.00060")
    assert f["stop_from"] == "min_stop_spreads" and f["stop_spreads"] == D("3.00")
    assert f["entry"] - f["stop_loss"] >= 3 * f["spread"]
    # reward 0.00060 − 0.00020 = 0.00040 against 0.00060 at risk
    assert f["risk_reward"] == D("0.667")
    assert scan_forex(market, now=NOW, thresholds=ForexThresholds(timeframe="1m", min_confidence=D(0))).candidates == []


def test_bar_only_data_pays_the_spread_from_settings_and_says_so():
    market, close = steady_market(1, spread=None)
    f = only(scan_forex(market, now=NOW, thresholds=ForexThresholds(**ANY, bar_only_spread_pips=D("2"))))
    assert f["spread"] == D("0.0002") and f["spread_from"] == "settings: bar_only_spread_pips"
    assert f["entry"] == close + D("0.0002") and "bar-only spread" in f["entry_from"]
    assert f["entry"] - f["stop_loss"] == D("0.00060")  # three spreads: the floor again
    assert bar_only_spread("USD/JPY", D("2")) == D("0.02") and bar_only_spread("EUR/USD", D("1.5")) == D("0.00015")


def test_the_multiples_and_the_floor_come_from_the_thresholds():
    market, bid = steady_market(1, spread="0.00002")
    wide = ForexThresholds(**{**ANY, "target_atr_multiple": D("5")}, stop_atr_multiple=D("2"), min_stop_spreads=D("30"))
    f = only(scan_forex(market, now=NOW, thresholds=wide))
    # ATR stop 0.00040 + 0.00002 from the entry is under 30 spreads (0.00060): the floor sets it
    assert f["entry"] - f["stop_loss"] == D("0.00060") and f["take_profit"] == bid + D("0.00100")
    assert f["risk_reward"] == D("1.633")  # (0.00100 − 0.00002) / 0.00060


def test_a_timeframe_the_pair_lacks_is_built_from_finer_bars():
    assert source_timeframe(("1m",), "15m") == "1m"
    assert source_timeframe(("1m", "5m"), "15m") == "5m"
    assert source_timeframe(("1h",), "15m") == "1h"  # nothing finer: the pair's own
    minute = [Bar(600_000 + i * 60_000, D(10 + i), D(11 + i), D(9 + i), D("10.5") + i) for i in range(7)]
    # 5-minute bars from 600 000 ms: [600 000, 900 000) holds minutes 0-4, the next one 5-6 and is still forming
    assert aggregate_bars(minute, 300_000, now=1_020_000) == [Bar(600_000, D(10), D(15), D(9), D("14.5"))]
    assert aggregate_bars(minute, 300_000, now=1_200_000)[-1] == Bar(900_000, D(15), D(17), D(14), D("16.5"))
    market, _ = steady_market(1, spread="0.00002")
    hours = [Bar(NOW - (800 - i) * 60_000, D("1.1"), D("1.1002"), D("1.0998"), D("1.1") + D("0.00001") * i)
             for i in range(800)]
    market.bar_series[("broker", "EUR/USD", "1m")] = hours
    result = scan_forex(market, now=NOW, thresholds=ForexThresholds(timeframe="15m", min_confidence=D(0), min_risk_reward=D(0)))
    for candidate in result.candidates:
        assert candidate.figures["timeframe"] == "15m" and candidate.figures["bar_ms"] == 900_000
    assert result.evaluated == 1 and result.skipped == {}
    assert Decimal(0) not in (c.figures["spread"] for c in result.candidates)
