"""Opportunities as CSV: one row per opportunity kept (docs/export.md); its verdicts are in the decisions export."""
from __future__ import annotations

from trifecta_site.clock import ms_to_datetime
from trifecta_site.exports import CsvTable

OPPORTUNITY_FIELDS = ("id", "kind", "type", "symbol", "venues", "direction", "route", "rank", "status", "risk_score",
                      "net_pct", "expected_profit", "expected_profit_usd", "confidence", "probability", "observed_at",
                      "market_ts", "detected_at", "scan_run_id")
OPPORTUNITY_HEADER = (*OPPORTUNITY_FIELDS[:-3], "market_at", "detected_at", "scan_run")


def _opportunity_values(opportunities):
    return opportunities.select_related(None).prefetch_related(None).values_list(*OPPORTUNITY_FIELDS)


def _opportunity_row(values: tuple) -> tuple:
    *head, market_ts, detected_at, scan_run = values
    return *head, ms_to_datetime(market_ts), detected_at, scan_run


OPPORTUNITIES = CsvTable(name="opportunities", header=OPPORTUNITY_HEADER, values=_opportunity_values, row=_opportunity_row)
