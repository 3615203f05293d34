"""Trades as CSV: one row per trade, its fills flattened into leg columns (docs/export.md).

One row a trade so that a spreadsheet's sums of size, fees and P&L count each trade once.
Market times only (no wall-clock `booked_at`): a replay's trades.csv is the same bytes every run.
"""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

from django.db.models import FilteredRelation, OuterRef, Q, Subquery

from trifecta_site.clock import ms_to_datetime
from trifecta_site.exports import CsvTable

from .models import Fill

TRADE_LEGS = 3  # a triangular arbitrage fills three legs, the most any trade has
TRADE_FIELDS = ("id", "opportunity_id", "portfolio_id", "kind", "symbol", "route", "venues", "direction", "status",
                "reject_reason", "opened_at", "closed_at", "size_usd", "fees_usd", "expected_pnl_usd", "max_loss_usd",
                "realized_pnl", "probability")
POSITION_FIELDS = ("close_reason", "entry_price", "exit_price", "stop_loss", "take_profit", "expiry_ts", "payout")
FILL_FIELDS = ("venue", "symbol", "side", "requested", "quantity", "price", "notional", "fee", "fee_rate", "filled_ts")
EDGE_PARTS = ("latency_move", "depth_slippage", "fees", "size_and_leg_risk")
# What one query reads per trade, in the header's order; the edge split's parts are read from `edge` last.
TRADE_VALUES = (*TRADE_FIELDS, *(f"position__{name}" for name in POSITION_FIELDS), "legs",
                *(f"leg{n}__{name}" for n in range(1, TRADE_LEGS + 1) for name in FILL_FIELDS))
MARKET_TIMES = [k for k, name in enumerate(TRADE_VALUES) if name.endswith("_ts")]  # epoch ms, written as times
LEGS = TRADE_VALUES.index("legs")
TRADE_HEADER = (  # the values' names without `_id` and `position__`, `_ts` (epoch ms) written `_at`
    *(name.removesuffix("_id").removeprefix("position__").replace("__", "_").replace("_ts", "_at") for name in TRADE_VALUES),
    *(f"edge_{part}" for part in EDGE_PARTS),
)


def _trade_values(trades):
    """One query: each trade with its position's columns, its first legs' (a join per leg) and its leg count."""
    legs = {f"leg{n}": FilteredRelation("fills", condition=Q(fills__leg=n)) for n in range(1, TRADE_LEGS + 1)}
    last_leg = Fill.objects.filter(trade=OuterRef("pk")).order_by("-leg").values("leg")[:1]
    return (trades.select_related(None).prefetch_related(None).annotate(**legs, legs=Subquery(last_leg))
            .values_list(*TRADE_VALUES, "edge"))


def _edge_part(value) -> Decimal | str | None:
    """A figure of the edge split (stored as a decimal string), or what is stored where it is not one."""
    if value is None:
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return str(value)


def _trade_row(values: tuple) -> list:
    *cells, edge = values
    for k in MARKET_TIMES:
        cells[k] = ms_to_datetime(cells[k])
    cells[LEGS] = cells[LEGS] or 0  # a rejected trade filled none
    return [*cells, *(_edge_part((edge or {}).get(part)) for part in EDGE_PARTS)]


TRADES = CsvTable(name="trades", header=TRADE_HEADER, values=_trade_values, row=_trade_row)
