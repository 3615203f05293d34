"""Watching open positions to their close, and learning from how they closed.

`monitor_positions` (a beat task, every 2 s by default) looks at every open position:
- forex: the completed bars since the last look, then the current quote. A long stops
  out when the bid reaches the stop-loss and takes profit when it reaches the target (a
  short on the ask: bid bars plus the spread at entry). When one bar touches both, the
  stop-loss is assumed first. A stop fills at its level, or at the bar's open when the
  market gapped through it; a target fills at its level. A position older than the
  maximum holding time is closed at market. Nothing is closed on a price older than the
  maximum quote age (the position waits for fresh data).
- binary: as a broker settles, on the last price at or before expiry (a quote's mid, else
  the finest bar's close, however long before expiry it was observed: no later trade means
  that price still stood), once the data shows it is the last one (an observation at or
  after expiry). CALL wins above the entry, PUT below; an equal price is a tie and refunds
  the stake. Void (refunded) only where the data ends before expiry, or has not come back
  within the maximum holding time: a stake is never settled on a guess.
Every close books realized P&L (USD, after spread and fees), then feeds the agent's
learning and the risk manager's day (loss budget, streak, cooldown), in the same
transaction: an outcome is learned exactly once.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction

from decisions.agents import RealizedOutcome, learn
from decisions.risk import record_outcome
from scanners.feeds.base import TIMEFRAME_MS, Feed, Quote
from trifecta_site.currency import usd_rates

from . import portfolio as book_keeping
from .events import announce_position, announce_trade
from .models import ExecutionSettings, Position, Trade, stored
from .prices import last_observed_ts, price_at

logger = logging.getLogger(__name__)
ZERO, ONE = Decimal(0), Decimal(1)


def record_close(*, trade: Trade, won: bool | None, teach: bool = True) -> None:
    """Feed a realized outcome back, in the closing transaction: the agent of the kind learns
    (unless not `teach`: an operator's close answers no prediction, see docs/operator.md), the
    risk day counts it."""
    if teach:
        learn(RealizedOutcome(kind=trade.kind, route=trade.route, symbol=trade.symbol, direction=trade.direction,
                              realized_pnl=trade.realized_pnl, expected_pnl=trade.expected_pnl_usd, won=won,
                              figures=trade.opportunity.figures))
    record_outcome(realized_pnl=trade.realized_pnl, at=trade.closed_at, released_usd=trade.max_loss_usd or ZERO,
                   approved_at=trade.opened_at)


def _close(position: Position, *, exit_price: Decimal, reason: str, ts: int, pnl: Decimal, won: bool | None,
           teach: bool = True) -> None:
    pnl = stored(pnl)
    position.status, position.exit_price, position.close_reason = Position.CLOSED, exit_price, reason
    position.closed_ts, position.realized_pnl, position.unrealized_pnl = ts, pnl, ZERO
    position.save()
    trade = position.trade
    book_keeping.settle(trade=trade, realized_pnl=pnl, closed_ts=ts, release_usd=position.reserved_usd)
    record_close(trade=trade, won=won, teach=teach)
    announce_position(position)
    announce_trade(trade)


def forex_pnl(position: Position, exit_price: Decimal, rate: Decimal) -> Decimal:
    """USD P&L of closing the position at `exit_price` (`rate`: USD per unit of its quote currency)."""
    sign = ONE if position.direction == "BUY" else -ONE
    return sign * (exit_price - position.entry_price) * position.quantity * rate


@dataclass
class Exit:
    """How a position closes: the rules' answer, before anything is booked."""

    reason: str
    price: Decimal
    ts: int
    pnl: Decimal
    won: bool | None = None


def _forex_exit(reason: str, price: Decimal, ts: int, pnl: Decimal) -> Exit:
    """A forex close; it is a success (what the agent's probability is of) when the target was reached first."""
    return Exit(reason, price, ts, pnl, won=reason == "take_profit")


@dataclass
class Look:
    """One look at a forex position: its exit, or its mark (`stale`: no price fresh enough to act on)."""

    exit: Exit | None = None
    unrealized: Decimal | None = None
    stale: bool = False


@dataclass(frozen=True)
class MarketPrice:
    """Where a forex position closes at market now, and what that was measured on: the bid of the
    latest quote for a long, its ask for a short (a bid bar's close, or a locked or crossed quote,
    plus the spread at entry, as the entry paid it). `problem` says why there is none to act on."""

    price: Decimal | None = None
    rate: Decimal | None = None  # USD per unit of the quote currency
    quote: Quote | None = None
    bar_ms: int = 0
    max_age_ms: int = 0  # the freshness allowance: the maximum quote age, plus a bar's period
    problem: str = ""  # "no price", "stale price" or "no USD rate"

    def age_ms(self, now: int) -> int | None:
        return None if self.quote is None else max(0, now - self.quote.ts)


def forex_market_price(position: Position, feed: Feed, now: int, settings: ExecutionSettings, *,
                       spread: Decimal) -> MarketPrice:
    """The executable price the monitor closes a forex position at (stop, max hold) and an operator
    closes it at by hand; none on a price older than the maximum quote age. Pure."""
    quote, bar_ms = feed.mark(position.venue, position.symbol)
    allowance = settings.max_quote_age_ms + bar_ms
    if quote is None:
        return MarketPrice(max_age_ms=allowance, problem="no price")
    if now - quote.ts > allowance:
        return MarketPrice(quote=quote, bar_ms=bar_ms, max_age_ms=allowance, problem="stale price")
    quote_ccy = position.symbol.split("/")[1]
    rate = usd_rates(feed, {quote_ccy}).to_usd(ONE, quote_ccy)
    if rate is None:
        return MarketPrice(quote=quote, bar_ms=bar_ms, max_age_ms=allowance, problem="no USD rate")
    if position.direction == "BUY":
        price = quote.bid
    else:
        price = quote.ask if quote.ask > quote.bid else quote.bid + spread
    return MarketPrice(price, rate, quote, bar_ms, allowance)


def forex_look(position: Position, feed: Feed, now: int, settings: ExecutionSettings, *, spread: Decimal) -> Look:
    """The stop-loss/take-profit/max-hold rules on the bars since the last look, then the quote.

    Pure: it reads the position's fields and the feed, writes nothing; `spread` is the
    spread at entry (a short's bid bars are shifted by it)."""
    if now < position.opened_ts:  # a replay fills ahead of its clock (after the latency): nothing to judge yet
        return Look(unrealized=position.unrealized_pnl)
    venue, symbol = position.venue, position.symbol
    market = forex_market_price(position, feed, now, settings, spread=spread)
    if market.problem:
        return Look(stale=True)
    rate = market.rate
    long = position.direction == "BUY"
    spread = ZERO if long else spread
    stop, target = position.stop_loss, position.take_profit
    timeframe = feed.finest_timeframe(venue, symbol)
    if timeframe:
        span = TIMEFRAME_MS[timeframe]
        bars = [b for b in feed.bars(venue, symbol, timeframe, limit=max(1, (now - position.checked_ts) // span + 1))
                if b.ts + span > position.checked_ts and b.ts >= position.opened_ts - span + 1 and b.ts + span <= now]
        for bar in bars:
            low, high, open_ = bar.low + spread, bar.high + spread, bar.open + spread
            stop_hit = low <= stop if long else high >= stop
            target_hit = high >= target if long else low <= target
            if stop_hit:  # first, also when the same bar reached the target
                price = min(stop, open_) if long else max(stop, open_)
                return Look(_forex_exit("stop_loss", price, bar.ts + span, forex_pnl(position, price, rate)))
            if target_hit:
                return Look(_forex_exit("take_profit", target, bar.ts + span, forex_pnl(position, target, rate)))
    exit_price = market.price
    if (long and exit_price <= stop) or (not long and exit_price >= stop):
        return Look(_forex_exit("stop_loss", exit_price, now, forex_pnl(position, exit_price, rate)))
    if (long and exit_price >= target) or (not long and exit_price <= target):
        return Look(_forex_exit("take_profit", target, now, forex_pnl(position, target, rate)))
    if now - position.opened_ts >= settings.max_holding_minutes * 60_000:
        return Look(_forex_exit("max_hold", exit_price, now, forex_pnl(position, exit_price, rate)))
    return Look(unrealized=forex_pnl(position, exit_price, rate))


def binary_exit(position: Position, feed: Feed, now: int, settings: ExecutionSettings, *, final: bool = False) -> Exit | None:
    """At expiry, the last price at or before it settles the stake, once the data shows it is
    the last (an observation at or after expiry); None while that is not yet known. Void only
    where the data ends before expiry (`final`: the market data ends here), or has not come back
    within the maximum holding time. Pure, as `forex_look`."""
    if now < position.expiry_ts:
        return None
    venue, symbol, expiry = position.venue, position.symbol, position.expiry_ts
    last_seen = last_observed_ts(feed, venue, symbol)
    if last_seen is None or last_seen < expiry:
        if final or now - expiry >= settings.max_holding_minutes * 60_000:
            return Exit("void", position.entry_price, expiry, ZERO)
        return None  # the data has not reached expiry yet: a later observation may still be the settling one
    timeframe = feed.finest_timeframe(venue, symbol)
    since = position.opened_ts - settings.max_quote_age_ms - (TIMEFRAME_MS[timeframe] if timeframe else 0)
    settled = price_at(feed, venue, symbol, expiry, since=since)  # the entry's own price at the latest
    stake, entry = position.quantity, position.entry_price
    if settled is None:
        return Exit("void", entry, expiry, ZERO)
    settle_price = settled.mid
    if settle_price == entry:
        return Exit("tie", settle_price, expiry, ZERO)
    won = settle_price > entry if position.direction == "CALL" else settle_price < entry
    return Exit("win" if won else "loss", settle_price, expiry, stake * position.payout if won else -stake, won)


def book_exit(position: Position, closing: Exit, *, teach: bool = True) -> str:
    """Book a close in the caller's transaction: the position, its trade and cash, the risk day and
    (`teach`) the agent's learning; announced once it commits."""
    _close(position, exit_price=closing.price, reason=closing.reason, ts=closing.ts, pnl=closing.pnl, won=closing.won,
           teach=teach)
    return closing.reason


def _check_forex(position: Position, feed: Feed, now: int, settings: ExecutionSettings) -> str | None:
    look = forex_look(position, feed, now, settings, spread=Decimal(position.trade.edge.get("entry_spread", "0")))
    if look.stale:
        return "stale"
    if look.exit is not None:
        return book_exit(position, look.exit)
    position.unrealized_pnl = stored(look.unrealized)
    position.checked_ts = now
    position.save(update_fields=["unrealized_pnl", "checked_ts"])
    return None


def _check_binary(position: Position, feed: Feed, now: int, settings: ExecutionSettings) -> str | None:
    closing = binary_exit(position, feed, now, settings)
    return None if closing is None else book_exit(position, closing)


def final_exit(position: Position, feed: Feed, now: int, settings: ExecutionSettings, *, spread: Decimal) -> Exit:
    """How a position still open when the market data ends closes: a binary settles at its
    expiry on the recorded price (void when the data ends before it); a forex position by
    its rules up to now, else at the last price there is (`end_of_data`)."""
    if position.kind == "binary":
        return binary_exit(position, feed, max(now, position.expiry_ts), settings, final=True)
    look = forex_look(position, feed, now, settings, spread=spread)
    if look.exit is not None:
        return look.exit
    quote, _ = feed.mark(position.venue, position.symbol)
    quote_ccy = position.symbol.split("/")[1]
    rate = usd_rates(feed, {quote_ccy}).to_usd(ONE, quote_ccy)
    price = None if quote is None else (quote.bid if position.direction == "BUY" else quote.ask)
    if price is None or rate is None:
        return Exit("void", position.entry_price, now, ZERO)
    return _forex_exit("end_of_data", price, now, forex_pnl(position, price, rate))


def close_remaining(*, feed: Feed, now: int) -> dict:
    """Close every open position as `final_exit` says (the end of a replay). Returns counts by reason."""
    settings = ExecutionSettings.get_solo()
    counts: dict[str, int] = {}
    for position in Position.objects.filter(status=Position.OPEN).select_related("trade__opportunity").order_by("opened_ts", "id"):
        with transaction.atomic():
            closing = final_exit(position, feed, now, settings,
                                 spread=Decimal(position.trade.edge.get("entry_spread", "0")))
            reason = book_exit(position, closing)
        counts[reason] = counts.get(reason, 0) + 1
    book_keeping.take_snapshot(ts=now, feed=feed)
    return counts


CHECKS = {"forex": _check_forex, "binary": _check_binary}


def monitor_positions(*, feed: Feed, now: int | None = None) -> dict:
    """Close what must close, mark the rest, and take the minute's equity snapshot. Returns counts by outcome."""
    now = feed.now() if now is None else now
    settings = ExecutionSettings.get_solo()
    counts: dict[str, int] = {}
    portfolio = book_keeping.current_portfolio()
    ids = list(Position.objects.filter(status=Position.OPEN, trade__portfolio=portfolio).order_by("opened_ts", "id")
               .values_list("id", flat=True))
    for position_id in ids:
        with transaction.atomic():
            position = (Position.objects.select_for_update(skip_locked=True).select_related("trade__portfolio")
                        .filter(pk=position_id, status=Position.OPEN).first())
            if position is None:
                continue  # another monitor has it
            outcome = CHECKS[position.kind](position, feed, now, settings) or "open"
        counts[outcome] = counts.get(outcome, 0) + 1
    book_keeping.take_snapshot(ts=now, portfolio=portfolio, feed=feed)
    return counts
