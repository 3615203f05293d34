"""Decisions as CSV: one row per layer's verdict (docs/export.md)."""
from __future__ import annotations

from trifecta_site.clock import ms_to_datetime
from trifecta_site.exports import CsvTable

DECISION_FIELDS = ("id", "opportunity_id", "layer", "verdict", "reasons", "level", "score", "size_usd", "probability",
                   "expected_pnl_usd", "max_loss_usd", "decided_at", "market_ts", "figures")
DECISION_HEADER = ("id", "opportunity", *DECISION_FIELDS[2:-2], "market_at", "figures")


def _decision_values(decisions):
    return decisions.select_related(None).prefetch_related(None).values_list(*DECISION_FIELDS)


def _decision_row(values: tuple) -> tuple:
    *head, market_ts, figures = values
    return *head, ms_to_datetime(market_ts), figures


DECISIONS = CsvTable(name="decisions", header=DECISION_HEADER, values=_decision_values, row=_decision_row)
