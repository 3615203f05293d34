"""Closing an open position by hand: an operator's "close now" (dashboard, API, admin).

A forex position closes at the price the monitor would close it at market now
(`monitor.forex_market_price`: the bid for a long, the ask for a short, never on a price
older than the maximum quote age), booked as the monitor books a close (`monitor.book_exit`)
plus a closing fill carrying its evidence and a `ManualClose` row saying who and why. A
binary stake settles at its expiry and cannot be closed early; arbitrage trades hold no
position (they close as they fill).

Exactly once against the monitor and another operator: the position row is locked (the
monitor skips a locked row and re-reads its status), its status is switched with a guarded
update, and the fill and the audit row are unique per leg and per position.
"""
from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from scanners.feeds.base import Feed

from .fills import BUY, SELL, FillResult
from .models import ExecutionSettings, Fill, ManualClose, Position
from .monitor import Exit, book_exit, forex_market_price, forex_pnl

MANUAL = "manual"
ONE = Decimal(1)


class CloseRefused(Exception):
    """A close that cannot happen, with what to tell the operator (the API answers 409 with it)."""


class AlreadyClosed(CloseRefused):
    pass


class NotClosable(CloseRefused):
    pass


class NoExecutablePrice(CloseRefused):
    pass


def close_position(*, position_id: int, feed: Feed, by=None, reason: str = "") -> Position:
    """Close the open position now at its executable price; raises `Position.DoesNotExist` or a `CloseRefused`."""
    settings = ExecutionSettings.get_solo()
    now = feed.now()
    with transaction.atomic():
        position = (Position.objects.select_for_update().select_related("trade__portfolio", "trade__opportunity")
                    .filter(pk=position_id).first())
        if position is None:
            raise Position.DoesNotExist(f"no position {position_id}")
        if position.status != Position.OPEN:
            raise AlreadyClosed(f"position {position.pk} is already closed ({position.close_reason or 'closed'} at "
                                f"{position.exit_price}); nothing was done")
        if position.kind != "forex":
            raise NotClosable(f"position {position.pk} is a binary option: it settles at its expiry and cannot be closed early")
        spread = Decimal(position.trade.edge.get("entry_spread", "0"))
        market = forex_market_price(position, feed, now, settings, spread=spread)
        if market.problem:
            raise NoExecutablePrice(_why_no_price(position, market, now))
        if not Position.objects.filter(pk=position.pk, status=Position.OPEN).update(status=Position.CLOSED):
            raise AlreadyClosed(f"position {position.pk} was closed meanwhile; nothing was done")
        fill = _closing_fill(position, market, now)
        book_exit(position, Exit(MANUAL, market.price, now, forex_pnl(position, market.price, market.rate)), teach=False)
        ManualClose.objects.create(position=position, fill=fill, closed_by=by if getattr(by, "is_authenticated", False) else None,
                                   reason=reason, closed_at=timezone.now())
    return position


def _why_no_price(position: Position, market, now: int) -> str:
    where = f"{position.symbol} on {position.venue}"
    if market.problem == "no price":
        return f"no price of {where} to close at; the position stays open"
    if market.problem == "stale price":
        return (f"the latest price of {where} is {market.age_ms(now)} ms old (at most {market.max_age_ms} ms): "
                "no close on a stale price; the position stays open")
    return f"no USD rate for {where}'s quote currency; the position stays open"


def _closing_fill(position: Position, market, now: int) -> Fill:
    """The closing leg as the fill model records one at a quote (no depth): price, quote age, top of book."""
    quantity, price = position.quantity, market.price
    result = FillResult(side=SELL if position.direction == "BUY" else BUY, requested=quantity, quantity=quantity,
                        notional=quantity * price, top_price=price, book_ts=market.quote.ts, filled_ts=now,
                        latency_ms=0, from_book=False, depth_share=ONE, levels=[[str(price), str(quantity)]])
    leg = (position.trade.fills.aggregate(last=Max("leg"))["last"] or 0) + 1
    evidence = {**result.evidence(), "closes": MANUAL, "bid": str(market.quote.bid), "ask": str(market.quote.ask),
                "quote_ts": market.quote.ts, "bar_ms": market.bar_ms, "max_age_ms": market.max_age_ms,
                "usd_rate": str(market.rate)}
    return Fill.objects.create(trade=position.trade, leg=leg, venue=position.venue, symbol=position.symbol,
                               side=result.side, requested=quantity, quantity=quantity, price=price,
                               notional=result.notional, fee=result.fee, fee_rate=result.fee_rate, evidence=evidence,
                               filled_ts=now)
