"""What the dashboard and WebSocket clients hear of trades and positions, sent once the
transaction that wrote them commits (a rolled-back write is never announced)."""
from __future__ import annotations

from django.db import transaction

from trifecta_site import events

from .models import Position, Trade


def _text(value) -> str | None:
    return None if value is None else str(value)


def trade_event(trade: Trade) -> dict:
    return {
        "id": trade.pk, "opportunity": trade.opportunity_id, "kind": trade.kind, "symbol": trade.symbol,
        "venues": trade.venues, "status": trade.status, "reject_reason": trade.reject_reason,
        "size_usd": str(trade.size_usd), "fees_usd": str(trade.fees_usd), "realized_pnl": _text(trade.realized_pnl),
        "opened_ts": trade.opened_ts, "closed_ts": trade.closed_ts, "edge": trade.edge,
    }


def position_event(position: Position) -> dict:
    return {
        "id": position.pk, "trade": position.trade_id, "kind": position.kind, "venue": position.venue,
        "symbol": position.symbol, "direction": position.direction, "status": position.status,
        "quantity": str(position.quantity), "entry_price": str(position.entry_price),
        "stop_loss": _text(position.stop_loss), "take_profit": _text(position.take_profit),
        "expiry_ts": position.expiry_ts, "close_reason": position.close_reason,
        "exit_price": _text(position.exit_price), "realized_pnl": _text(position.realized_pnl),
        "unrealized_pnl": str(position.unrealized_pnl),
    }


def announce_trade(trade: Trade) -> None:
    payload = trade_event(trade)
    transaction.on_commit(lambda: events.publish("trade", payload), robust=True)


def announce_position(position: Position) -> None:
    payload = position_event(position)
    transaction.on_commit(lambda: events.publish("position", payload), robust=True)
