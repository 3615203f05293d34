"""Forex signals from bid bars: BUY / SELL / HOLD with a confidence, entry, stop and target.

Indicators (computed in float over the completed bars, as MetaTrader shows them):
- trend: EMA(12) against EMA(26) (the MACD line), scored by its size in ATRs;
- momentum: RSI(14) around 50, and the MACD histogram (MACD − its 9-period EMA);
- volatility: ATR(14), which sizes the stop-loss and take-profit.

Each of the three votes in [−1, +1] (positive = up):
    trend    = clip(macd / (0.5 × ATR), −1, 1)
    rsi      = clip((RSI − 50) / 20, −1, 1)
    histogram = clip(hist / (0.25 × ATR), −1, 1)
score = 0.5 × trend + 0.25 × rsi + 0.25 × histogram, in [−1, 1]. The signal is BUY when
score > 0.2, SELL when score < −0.2, else HOLD, and

    confidence = |score|, except that an RSI beyond 70 (for BUY) or below 30 (for SELL)
                 halves it: the move is stretched.

Confidence is therefore the strength of agreement between trend and momentum, in
[0, 1]. It is *not* a calibrated probability of the trade winning; how often signals of
each confidence really won is measured by the backtest report's calibration.

Levels are executable ones. Bars are bid bars; a position opens on the side that fills
(BUY at the ask, SELL at the bid) and closes on the other. From the exit side's price
now (bid for BUY, ask for SELL):
    stop-loss   = exit price ∓ stop_atr_multiple × ATR
    take-profit = exit price ± target_atr_multiple × ATR
and the stop is moved out, where it must, to `min_stop_spreads` spreads from the entry
(`stop_from` says which rule set it): a stop inside a few spreads is hit by the spread
alone. risk_reward = |take-profit − entry| / |entry − stop-loss| with the entry on its
fill side, so the spread counts against both and the `min_risk_reward` filter bites
where the spread is large against the bar's range. ATR is that of the signal's
timeframe. The spread is the quote's; with bar-only data (no usable quote) the entry is
the last close (bid) plus `bar_only_spread_pips` pips (a pip is 0.01 for JPY-quoted
pairs, else 0.0001) for a BUY, and `spread_from` says the spread came from settings.
Ranking: confidence × min(risk_reward, 3). Risk score: 100 × (1 − confidence).

With a `max_quote_age_ms` (the scan command's `--max-quote-age`), a signal also needs an
entry quote at most that old (`stale_quote` otherwise).

Bars are those of the configured timeframe; where the pair is recorded only on a finer
one that divides it, they are built from those (open of the first, high and low of all,
close of the last, on boundaries counted from the Unix epoch; a bar is complete once its
period has passed); else the pair's finest recorded timeframe is used (`timeframe` in the
figures says which, `bar_ms` its length).

Freshness follows the bars' cadence: a bar is current until the next one is due, plus a
grace (`bar_grace_ms`); past that the pair is skipped (`stale_bars`). Forex is closed
from Friday 21:00 UTC to Sunday 21:00 UTC (the later of the winter and summer opens,
22:00 UTC in winter); no signal is made then: a gap over the weekend is not a signal.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import ROUND_CEILING, Decimal

import numpy as np

from .candidates import FOREX, Candidate, ScanResult
from .feeds.base import TIMEFRAME_MS, Bar, Feed

FOUR = Decimal("0.0001")


@dataclass(frozen=True)
class ForexThresholds:
    timeframe: str = "15m"
    min_confidence: Decimal = Decimal("0.60")
    min_risk_reward: Decimal = Decimal("1.5")
    top_n: int = 2
    auto_min_confidence: Decimal = Decimal("0.70")
    auto_min_risk_reward: Decimal = Decimal("2.0")
    stop_atr_multiple: Decimal = Decimal("1.5")
    target_atr_multiple: Decimal = Decimal("4")
    min_stop_spreads: Decimal = Decimal("3")
    bar_only_spread_pips: Decimal = Decimal("2")
    bar_grace_ms: int = 5000  # a bar is current until the next is due, plus this
    bars_needed: int = 60
    max_quote_age_ms: int | None = None  # when set, a signal needs an entry quote at most this old


def market_closed(ms: int) -> bool:
    """Friday 21:00 UTC to Sunday 21:00 UTC."""
    moment = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    weekday, hour = moment.weekday(), moment.hour
    return (weekday == 4 and hour >= 21) or weekday == 5 or (weekday == 6 and hour < 21)


WEEK_MS = 7 * 86_400_000
CLOSE_OFFSET_MS = (4 * 24 + 21 - 3 * 24) * 3_600_000  # Friday 21:00 UTC after the epoch's Thursday 00:00
OPEN_OFFSET_MS = CLOSE_OFFSET_MS + 2 * 86_400_000  # Sunday 21:00 UTC


def next_market_change(ms: int) -> int:
    """The first instant after `ms` at which `market_closed` changes its answer (a Friday close or a Sunday open)."""
    offset = OPEN_OFFSET_MS if market_closed(ms) else CLOSE_OFFSET_MS
    return ms + 1 + (offset - (ms + 1)) % WEEK_MS


def ema(values: np.ndarray, period: int) -> np.ndarray:
    alpha = 2.0 / (period + 1)
    out = np.empty_like(values)
    out[0] = values[0]
    for i in range(1, len(values)):
        out[i] = alpha * values[i] + (1 - alpha) * out[i - 1]
    return out


def rsi(closes: np.ndarray, period: int = 14) -> float:
    """Wilder's RSI of the last bar."""
    changes = np.diff(closes)
    gains, losses = np.clip(changes, 0, None), np.clip(-changes, 0, None)
    avg_gain, avg_loss = gains[:period].mean(), losses[:period].mean()
    for gain, loss in zip(gains[period:], losses[period:]):
        avg_gain = (avg_gain * (period - 1) + gain) / period
        avg_loss = (avg_loss * (period - 1) + loss) / period
    if avg_loss == 0:
        return 100.0 if avg_gain > 0 else 50.0
    return 100.0 - 100.0 / (1.0 + avg_gain / avg_loss)


def atr(highs: np.ndarray, lows: np.ndarray, closes: np.ndarray, period: int = 14) -> float:
    """Wilder's average true range of the last bar."""
    previous = closes[:-1]
    true_range = np.maximum(highs[1:] - lows[1:], np.maximum(abs(highs[1:] - previous), abs(lows[1:] - previous)))
    value = true_range[:period].mean()
    for tr in true_range[period:]:
        value = (value * (period - 1) + tr) / period
    return float(value)


def signal_from(closes, highs, lows) -> dict:
    """The indicator votes and the resulting signal for one series of bars."""
    fast, slow = ema(closes, 12), ema(closes, 26)
    macd = fast - slow
    histogram = macd - ema(macd, 9)
    volatility = atr(highs, lows, closes)
    strength = rsi(closes)
    if volatility <= 0:
        return {"signal": "HOLD", "confidence": 0.0, "atr": 0.0, "rsi": strength, "macd": 0.0, "histogram": 0.0}
    trend = float(np.clip(macd[-1] / (0.5 * volatility), -1, 1))
    momentum = float(np.clip((strength - 50) / 20, -1, 1))
    push = float(np.clip(histogram[-1] / (0.25 * volatility), -1, 1))
    score = 0.5 * trend + 0.25 * momentum + 0.25 * push
    signal = "BUY" if score > 0.2 else "SELL" if score < -0.2 else "HOLD"
    confidence = abs(score)
    if (signal == "BUY" and strength > 70) or (signal == "SELL" and strength < 30):
        confidence /= 2
    return {"signal": signal, "confidence": confidence, "atr": volatility, "rsi": strength,
            "macd": float(macd[-1]), "histogram": float(histogram[-1]), "score": score}


def pip_size(symbol: str) -> Decimal:
    """A pip of the pair: 0.01 where the quote currency is the yen, else 0.0001."""
    return Decimal("0.01") if symbol.split("/")[1].split(":")[0] == "JPY" else Decimal("0.0001")


def bar_only_spread(symbol: str, pips: Decimal) -> Decimal:
    """The spread assumed where only (bid) bars are known: never zero, since a fill always pays one."""
    return pips * pip_size(symbol)


def source_timeframe(available: tuple[str, ...], configured: str) -> str | None:
    """The recorded timeframe the configured one's bars come from: itself, else the coarsest finer
    one that divides it (bars are built from it), else the pair's finest (used as it is)."""
    if configured in available:
        return configured
    span = TIMEFRAME_MS[configured]
    finer = [tf for tf in available if TIMEFRAME_MS[tf] < span and span % TIMEFRAME_MS[tf] == 0]
    if finer:
        return max(finer, key=TIMEFRAME_MS.get)
    return min(available, key=TIMEFRAME_MS.get) if available else None


def aggregate_bars(bars: list[Bar], span: int, now: int) -> list[Bar]:
    """Bars of `span` from finer ones, on boundaries counted from the epoch; only the complete ones
    (whose period has passed by `now`): a bar still forming would leak its future close."""
    result: list[Bar] = []
    group: list[Bar] = []

    def close_group():
        volumes = [b.volume for b in group if b.volume is not None]
        result.append(Bar(group[0].ts - group[0].ts % span, group[0].open, max(b.high for b in group),
                          min(b.low for b in group), group[-1].close, sum(volumes) if volumes else None))

    for bar in bars:
        if group and bar.ts - bar.ts % span != group[0].ts - group[0].ts % span:
            close_group()
            group = []
        group.append(bar)
    if group and group[0].ts - group[0].ts % span + span <= now:
        close_group()
    return result


def signal_bars(feed: Feed, venue: str, symbol: str, timeframe: str, source: str, *, now: int, limit: int) -> list[Bar]:
    """Up to `limit` completed bars of `timeframe`, read as they are or built from `source`."""
    if source == timeframe or TIMEFRAME_MS[source] >= TIMEFRAME_MS[timeframe]:
        return feed.bars(venue, symbol, source, limit=limit)
    ratio = TIMEFRAME_MS[timeframe] // TIMEFRAME_MS[source]
    finer = feed.bars(venue, symbol, source, limit=(limit + 1) * ratio)
    return aggregate_bars(finer, TIMEFRAME_MS[timeframe], now)[-limit:]


def _decimal(value: float, places: int = 8) -> Decimal:
    return Decimal(repr(float(value))).quantize(Decimal(1).scaleb(-places))


def scan_forex(feed: Feed, *, now: int, thresholds: ForexThresholds, cache: dict | None = None) -> ScanResult:
    """Every BUY or SELL at or above the thresholds on the forex pairs of the feed, best first.

    `cache` (kept by the caller across scans) holds each pair's indicators for its last
    completed bar, so scanning more often than bars complete costs a lookup, not a recompute.
    """
    result = ScanResult(kind=FOREX, ts=now)
    venues = feed.venues()
    for instrument in feed.instruments():
        if venues[instrument.venue].asset_class != "forex":
            continue
        result.instruments_seen += 1
        if market_closed(now):
            result.skipped["market_closed"] += 1
            continue
        source = source_timeframe(instrument.timeframes, thresholds.timeframe)
        if source is None:
            result.skipped["no_bars"] += 1
            continue
        timeframe = thresholds.timeframe if TIMEFRAME_MS[source] < TIMEFRAME_MS[thresholds.timeframe] else source
        span = TIMEFRAME_MS[timeframe]
        latest = feed.bars(instrument.venue, instrument.symbol, source, limit=1)
        # the bars only change with a new source bar, or when the period of the one being built passes
        key = (instrument.venue, instrument.symbol, timeframe, latest[-1].ts if latest else None,
               now // span if source != timeframe else None)
        if cache is not None and key in cache:
            bars, figures = cache[key]
        else:
            bars = signal_bars(feed, instrument.venue, instrument.symbol, timeframe, source, now=now,
                               limit=max(thresholds.bars_needed, 60))
            figures = None
        if len(bars) < 40:
            result.skipped["insufficient_history"] += 1
            continue
        last_close_at = bars[-1].ts + span
        if now - last_close_at > span + thresholds.bar_grace_ms:  # the next bar was due and has not come
            result.skipped["stale_bars"] += 1
            continue
        if figures is None:
            closes = np.array([float(b.close) for b in bars])
            highs, lows = np.array([float(b.high) for b in bars]), np.array([float(b.low) for b in bars])
            figures = signal_from(closes, highs, lows)
            if cache is not None:
                if len(cache) > 10_000:
                    cache.clear()
                cache[key] = (bars, figures)
        result.evaluated += 1
        if figures["signal"] == "HOLD":
            continue
        candidate = _candidate(feed, instrument, bars, figures, now=now, thresholds=thresholds,
                               last_close_at=last_close_at, timeframe=timeframe)
        if isinstance(candidate, str):
            result.skipped[candidate] += 1
        elif candidate is not None:
            result.candidates.append(candidate)
    result.candidates.sort(key=lambda c: c.rank, reverse=True)
    return result


def _candidate(feed, instrument, bars, figures, *, now, thresholds, last_close_at, timeframe) -> Candidate | str | None:
    """The candidate, None when it misses a threshold, or the reason it was skipped."""
    confidence = _decimal(figures["confidence"], 4)
    if confidence < thresholds.min_confidence:
        return None
    quote = feed.quote(instrument.venue, instrument.symbol)
    if thresholds.max_quote_age_ms is not None and (quote is None or now - quote.ts > thresholds.max_quote_age_ms):
        return "stale_quote"
    buy = figures["signal"] == "BUY"
    if quote is not None and quote.bid is not None and quote.ask is not None and not quote.crossed and quote.ts <= now:
        bid, ask, spread = quote.bid, quote.ask, quote.ask - quote.bid
        entry_from, spread_from, observed = "quote", "quote", min(quote.ts, last_close_at)
    else:
        spread = bar_only_spread(instrument.symbol, thresholds.bar_only_spread_pips)
        bid, ask = bars[-1].close, bars[-1].close + spread
        entry_from = "last close + bar-only spread (no usable quote)"
        spread_from, observed = "settings: bar_only_spread_pips", last_close_at
    entry, exit_price = (ask, bid) if buy else (bid, ask)
    side = 1 if buy else -1
    places = max(5, -entry.as_tuple().exponent)
    tick = Decimal(1).scaleb(-places)
    atr_value = _decimal(figures["atr"], places + 2)
    stop_atr = (atr_value * thresholds.stop_atr_multiple).quantize(tick)
    target_atr = (atr_value * thresholds.target_atr_multiple).quantize(tick)
    if stop_atr <= 0:
        return None
    stop, stop_from = exit_price - side * stop_atr, "atr"
    floor = (thresholds.min_stop_spreads * spread).quantize(tick, rounding=ROUND_CEILING)
    if abs(entry - stop) < floor:
        stop, stop_from = entry - side * floor, "min_stop_spreads"
    target = exit_price + side * target_atr
    risk, reward = abs(entry - stop), side * (target - entry)
    if reward <= 0:
        return None
    risk_reward = (reward / risk).quantize(Decimal("0.001"))
    if risk_reward < thresholds.min_risk_reward:
        return None
    risk_score = (Decimal(100) * (1 - confidence)).quantize(Decimal("0.01"))
    return Candidate(
        FOREX, now, observed, risk_score, confidence * min(risk_reward, Decimal(3)),
        {
            "symbol": instrument.symbol, "venue": instrument.venue, "signal": figures["signal"],
            "confidence": confidence, "entry": entry, "stop_loss": stop, "take_profit": target,
            "risk_reward": risk_reward, "timeframe": timeframe, "bar_ms": TIMEFRAME_MS[timeframe],
            "entry_from": entry_from, "spread": spread, "spread_from": spread_from, "stop_from": stop_from,
            "stop_spreads": (risk / spread).quantize(Decimal("0.01")),
            "indicators": {
                "atr": atr_value, "rsi": _decimal(figures["rsi"], 2), "macd": _decimal(figures["macd"], places + 2),
                "histogram": _decimal(figures["histogram"], places + 2), "score": _decimal(figures["score"], 4),
            },
        },
    )
