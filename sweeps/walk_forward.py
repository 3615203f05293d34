"""Walk-forward: one replay's figures on each side of the split in market time.

Each setting is replayed once over the whole window, as the live desk would have run it;
the ranking uses only what happened up to the split (in-sample) and the figures after it
(out-of-sample) show whether the setting held up on data it was not chosen on. A replay
never looks ahead, so its first part is what a replay stopped at the split would have done.
A trade counts where it closed (where its P&L was realized), a prediction (Brier) where it
was made, and each side's drawdown is measured from the equity it started with.
"""
from __future__ import annotations

from decimal import Decimal

MONEY = Decimal("0.0000000001")
RATIO = Decimal("0.0001")
ZERO = Decimal(0)
PARTS = ("in_sample", "out_of_sample")


def split_ts(*, start: int, end: int, split: Decimal) -> int:
    """The last in-sample market time: `split` of the window's market time after its start."""
    if not ZERO < split < 1:
        raise ValueError(f"--split: {split} must be between 0 and 1 (the in-sample share of the market time)")
    return start + int((Decimal(end - start) * split).to_integral_value(rounding="ROUND_FLOOR"))


def _hit(opportunity: dict, trades: dict) -> bool | None:
    """Whether the predicted success came true, as the replay report's calibration counts it:
    a forex position reached its target, a binary won; ties, voids and open positions say nothing."""
    trade = trades.get(opportunity["trade"])
    if trade is not None:
        if trade["status"] != "closed":
            return None
        if opportunity["kind"] == "binary":
            return {"win": True, "loss": False}.get(trade.get("outcome"))
        return trade["close_reason"] == "take_profit"
    would = opportunity.get("would_realize")
    if not would or would.get("realized_pnl") is None:
        return None
    if opportunity["kind"] == "binary":
        return {"win": True, "loss": False}.get(would["outcome"])
    return would["outcome"] == "take_profit"


def _drawdown_pct(start_equity: Decimal, equities: list[Decimal]) -> Decimal:
    peak, worst = start_equity, ZERO
    for equity in equities:
        peak = max(peak, equity)
        if peak > 0:
            worst = max(worst, (peak - equity) / peak * 100)
    return worst.quantize(RATIO)


def figures(report: dict, *, split_at: int) -> dict[str, dict]:
    """`in_sample`, `out_of_sample` and `whole`: P&L, trades, wins, losses, max drawdown and Brier."""
    start_equity = Decimal(report["start_equity"])
    curve = [(point["ts"], Decimal(point["equity"])) for point in report["equity_curve"]]
    before = [equity for ts, equity in curve if ts <= split_at]
    after = [equity for ts, equity in curve if ts > split_at]
    equity_at_split = before[-1] if before else start_equity
    sides = {"in_sample": lambda ts: ts <= split_at, "out_of_sample": lambda ts: ts > split_at, "whole": lambda ts: True}
    trades = {trade["id"]: trade for trade in report["trades"]}
    closed = [trade for trade in report["trades"] if trade["status"] == "closed"]
    predictions = [(o["market_ts"], Decimal(o["probability"]), hit) for o in report["opportunities"]
                   if o["kind"] in ("forex", "binary") and o["probability"] is not None
                   and (hit := _hit(o, trades)) is not None]
    drawdowns = {"in_sample": _drawdown_pct(start_equity, before), "out_of_sample": _drawdown_pct(equity_at_split, after),
                 "whole": _drawdown_pct(start_equity, before + after)}
    result = {}
    for side, inside in sides.items():
        mine = [trade for trade in closed if inside(trade["closed_at"])]
        pnl = [Decimal(trade["realized_pnl"]) for trade in mine]
        scored = [(p, hit) for ts, p, hit in predictions if inside(ts)]
        brier = sum(((p - (1 if hit else 0)) ** 2 for p, hit in scored), ZERO) / len(scored) if scored else None
        result[side] = {
            "pnl": f"{sum(pnl, ZERO).quantize(MONEY):f}", "trades": len(mine),
            "wins": sum(1 for value in pnl if value > 0), "losses": sum(1 for value in pnl if value < 0),
            "max_drawdown_pct": f"{drawdowns[side]:f}",
            "brier": None if brier is None else f"{brier.quantize(RATIO):f}", "predictions": len(scored),
        }
    return result
