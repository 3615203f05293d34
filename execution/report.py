"""The replay report: what the desk did over a recording, from the rows it wrote.

`build_report` reads the replay's database (every opportunity, decision, trade, fill,
risk day and equity point) and the replay's scores of what was skipped, and returns the
`report.json` document README describes. Decimals are strings, times epoch ms, rows in
id order and keys sorted on writing, so the same recording and settings give the same
bytes.
"""
from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

from decisions.models import Controls, Decision, RiskDay, RiskLimits
from scanners.models import ArbitrageSettings, BinarySettings, ForexSettings, Opportunity, ScanRun
from trifecta_site.api import settings_serializer

from .exports import TRADES
from .models import Balance, EquitySnapshot, ExecutionSettings, Position, Trade
from .portfolio import OUTCOMES, cash_account, current_portfolio, inventory, outcome_counts, outcome_of, win_rate
from .replay import ReplayResult

FORMAT = "trifecta-replay-report/1"
MONEY = Decimal("0.0000000001")
RATIO = Decimal("0.0001")
ZERO = Decimal(0)
SETTINGS_ROWS = {"controls": Controls, "limits": RiskLimits, "execution": ExecutionSettings}
THRESHOLD_ROWS = {"arbitrage": ArbitrageSettings, "forex": ForexSettings, "binary": BinarySettings}
CALIBRATION_BINS = 10


def money(value) -> str | None:
    return None if value is None else f"{Decimal(value).quantize(MONEY):f}"


def ratio(numerator, denominator) -> str | None:
    return f"{(Decimal(numerator) / Decimal(denominator)).quantize(RATIO):f}" if denominator else None


def plain(value) -> str | None:
    return None if value is None else str(value)


def effective_settings(intervals: dict) -> dict:
    """Every setting the replay ran with, as the API shows it."""
    settings = {name: dict(settings_serializer(model)(model.get_solo()).data) for name, model in SETTINGS_ROWS.items()}
    settings["thresholds"] = {kind: dict(settings_serializer(model)(model.get_solo()).data)
                              for kind, model in THRESHOLD_ROWS.items()}
    settings["intervals_s"] = dict(intervals)
    return settings


def _fills(trade: Trade) -> list[dict]:
    return [{"leg": f.leg, "venue": f.venue, "symbol": f.symbol, "side": f.side, "requested": money(f.requested),
             "quantity": money(f.quantity), "price": money(f.price), "notional": money(f.notional), "fee": money(f.fee),
             "fee_rate": plain(f.fee_rate), "filled_at": f.filled_ts} for f in trade.fills.all()]


def _trade(trade: Trade) -> dict:
    position = getattr(trade, "position", None)
    row = {"id": trade.pk, "opportunity": trade.opportunity_id, "kind": trade.kind, "symbol": trade.symbol,
           "venues": trade.venues, "route": trade.route, "direction": trade.direction, "status": trade.status,
           "opened_at": trade.opened_ts, "closed_at": trade.closed_ts, "size_usd": money(trade.size_usd),
           "fees": money(trade.fees_usd), "expected_pnl": money(trade.expected_pnl_usd),
           "realized_pnl": money(trade.realized_pnl), "close_reason": position.close_reason if position else None,
           "max_loss": money(trade.max_loss_usd), "probability": plain(trade.probability),
           "price_ages_ms": [age for fill in trade.fills.all()
                             for age in (fill.evidence.get("book_age_ms"), fill.evidence.get("quote_age_ms")) if age is not None],
           "edge": trade.edge, "fills": _fills(trade)}
    if trade.kind == "binary" and position is not None:
        row.update({"entry_price": money(position.entry_price), "expiry_at": position.expiry_ts,
                    "settle_price": money(position.exit_price), "stake": money(position.quantity),
                    "payout": plain(position.payout), "outcome": position.close_reason or None})
    if trade.kind == "forex" and position is not None:
        row.update({"entry_price": money(position.entry_price), "exit_price": money(position.exit_price),
                    "stop_loss": money(position.stop_loss), "take_profit": money(position.take_profit),
                    "quantity": money(position.quantity)})
    return row


def _groups(trades: list[dict], key) -> dict:
    groups = defaultdict(lambda: {"trades": 0, "realized_pnl": ZERO, "expected_pnl": ZERO, "fees": ZERO,
                                  **dict.fromkeys(OUTCOMES, 0)})
    for trade in trades:
        if trade["status"] != Trade.CLOSED:
            continue
        group = groups[key(trade)]
        pnl = Decimal(trade["realized_pnl"])
        group["trades"] += 1
        group[outcome_of(trade["kind"], trade["close_reason"], pnl)] += 1
        group["realized_pnl"] += pnl
        group["expected_pnl"] += Decimal(trade["expected_pnl"] or 0)
        group["fees"] += Decimal(trade["fees"])
    return {name: {"trades": g["trades"], **_outcomes(g), "realized_pnl": money(g["realized_pnl"]),
                   "expected_pnl": money(g["expected_pnl"]), "fees": money(g["fees"])} for name, g in groups.items()}


def _outcomes(counts: dict) -> dict:
    """Wins, losses, ties, voids, decided (wins + losses) and the win rate over decided trades."""
    return {**{name: counts[name] for name in OUTCOMES}, "decided": counts["wins"] + counts["losses"],
            "win_rate": win_rate(counts["wins"], counts["losses"])}


def _calibration(points: list[tuple[Decimal, bool]]) -> dict:
    """Predicted against realized hit rate in equal-width bins of the prediction, and the Brier score
    beside the base rate's (always predicting the realized hit rate): a probability worth its name
    scores no worse."""
    if not points:
        return {"count": 0, "brier": None, "base_rate": None, "base_rate_brier": None, "bins": []}
    width = Decimal(1) / CALIBRATION_BINS
    bins = defaultdict(list)
    for predicted, hit in points:
        bins[min(int(predicted / width), CALIBRATION_BINS - 1)].append((predicted, hit))
    brier = sum(((p - (1 if hit else 0)) ** 2 for p, hit in points), ZERO) / len(points)
    base = Decimal(sum(hit for _, hit in points)) / len(points)
    return {
        "count": len(points), "brier": str(brier.quantize(RATIO)), "base_rate": str(base.quantize(RATIO)),
        "base_rate_brier": str((base * (1 - base)).quantize(RATIO)),
        "bins": [{"from": str(index * width), "to": str((index + 1) * width), "count": len(rows),
                  "predicted": str((sum((p for p, _ in rows), ZERO) / len(rows)).quantize(RATIO)),
                  "realized": ratio(sum(hit for _, hit in rows), len(rows))}
                 for index, rows in sorted(bins.items())],
    }


def build_report(*, result: ReplayResult, recording_name: str) -> dict:
    portfolio = current_portfolio()
    trades = [_trade(t) for t in executed_trades(portfolio).select_related("position").prefetch_related("fills")]
    traded = {t["opportunity"]: t for t in trades}
    rejected = dict(Trade.objects.filter(status=Trade.REJECTED).values_list("opportunity_id", "reject_reason"))
    decisions, governor = [], {}
    for d in Decision.objects.order_by("opportunity_id", "id").values(
            "opportunity_id", "layer", "verdict", "reasons", "level", "score", "size_usd", "market_ts"):
        decisions.append({"opportunity": d["opportunity_id"], "layer": d["layer"], "verdict": d["verdict"],
                          "reasons": d["reasons"], "level": d["level"] or None, "score": plain(d["score"]),
                          "size_usd": money(d["size_usd"]), "decided_at": d["market_ts"]})
        if d["layer"] == Decision.GOVERNOR:
            governor[d["opportunity_id"]] = d

    opportunities, skipped_by_reason = [], defaultdict(lambda: [0, ZERO])
    skipped_count, skipped_total = 0, ZERO
    calibration = {"forex": [], "binary": []}
    for o in Opportunity.objects.order_by("id").values(
            "id", "kind", "type", "symbol", "venues", "route", "direction", "market_ts", "net_pct", "expected_profit_usd",
            "confidence", "probability", "risk_score", "rank"):
        verdict = governor.get(o["id"])
        trade = traded.get(o["id"])
        reasons = list(verdict["reasons"]) if verdict else []
        if o["id"] in rejected:
            reasons.append(rejected[o["id"]])
        shadow = result.shadows.get(o["id"])
        would = None
        if trade is None and shadow is not None:
            would = {"realized_pnl": money(shadow.realized_pnl), "outcome": shadow.outcome, "closed_at": shadow.closed_ts}
            skipped_count += 1
            pnl = (shadow.realized_pnl or ZERO).quantize(MONEY)
            skipped_total += pnl
            for code in reasons or ["NOT_DECIDED"]:
                skipped_by_reason[code][0] += 1
                skipped_by_reason[code][1] += pnl
        opportunities.append({
            "id": o["id"], "kind": o["kind"], "type": o["type"], "symbol": o["symbol"], "venues": o["venues"],
            "route": o["route"], "direction": o["direction"], "market_ts": o["market_ts"], "rank": o["rank"],
            "net_pct": plain(o["net_pct"]), "expected_profit_usd": money(o["expected_profit_usd"]),
            "confidence": plain(o["confidence"]), "probability": plain(o["probability"]), "risk_score": plain(o["risk_score"]),
            "verdict": verdict["verdict"] if verdict else None, "reasons": reasons,
            "trade": trade["id"] if trade else None, "would_realize": would,
        })
        outcome = _hit(o["kind"], trade, shadow)
        if outcome is not None and o["kind"] in calibration:
            predicted = o["probability"]  # the calibrated probability the desk acted on
            if predicted is not None:
                calibration[o["kind"]].append((Decimal(predicted), outcome))

    closed = [t for t in trades if t["status"] == Trade.CLOSED]
    outcomes = outcome_counts((t["kind"], t["close_reason"], Decimal(t["realized_pnl"])) for t in closed)
    realized = sum((Decimal(t["realized_pnl"]) for t in closed), ZERO)
    days = [{"date": day.date.isoformat(), "trades": day.trades, "realized_pnl": money(day.realized_pnl),
             "realized_loss": money(day.realized_loss), "limit_trips": dict(sorted(day.limit_trips.items()))}
            for day in RiskDay.objects.order_by("date")]
    limit_trips = defaultdict(int)
    for day in days:
        for code, times in day["limit_trips"].items():
            limit_trips[code] += times
    data_quality = defaultdict(int)
    for skipped in ScanRun.objects.exclude(skipped={}).values_list("skipped", flat=True):
        for code, times in skipped.items():
            data_quality[code] += times
    curve = [{"ts": s["minute_ts"], "equity": money(s["equity"]), "drawdown_pct": plain(s["drawdown_pct"]),
              "starting_value": money(s["starting_value"]), "inventory_revaluation": money(s["inventory_revaluation"])}
             for s in EquitySnapshot.objects.filter(portfolio=portfolio).order_by("minute_ts")
             .values("minute_ts", "equity", "drawdown_pct", "starting_value", "inventory_revaluation")]
    open_positions = Position.objects.filter(status=Position.OPEN, trade__portfolio=portfolio)
    unrealized = sum((p.unrealized_pnl for p in open_positions), ZERO)
    held = inventory(portfolio)
    start = portfolio.starting_value + held.seed_value
    return {
        "format": FORMAT,
        "recording": {"name": recording_name, "start": result.start, "end": result.end},
        "complete": result.complete,
        "simulated_to": result.simulated_to,
        "start_equity": money(start),
        "final_equity": money(start + realized + unrealized + held.revaluation),
        "cash": money(cash_account(portfolio).total),
        "realized_pnl": money(realized),
        "unrealized_pnl": money(unrealized),
        "inventory": _inventory(portfolio, held),
        "max_drawdown_pct": str(max((Decimal(p["drawdown_pct"]) for p in curve), default=ZERO)),
        "settings": effective_settings(result.intervals),
        "summary": {
            "opportunities": len(opportunities), "executed": len(trades), "skipped": skipped_count,
            "trades": len(closed), **_outcomes(outcomes),
            "fees": money(sum((Decimal(t["fees"]) for t in trades), ZERO)),
            "expected_pnl": money(sum((Decimal(t["expected_pnl"] or 0) for t in closed), ZERO)),
            "realized_pnl": money(realized), "scans": dict(result.scans), "market_events": result.market_events,
            "rejected_at_execution": len(rejected),
        },
        "per_kind": dict(sorted(_groups(trades, lambda t: t["kind"]).items())),
        "per_route": sorted(({"kind": kind, "route": route, **figures}
                             for (kind, route), figures in _groups(trades, lambda t: (t["kind"], t["route"])).items()),
                            key=lambda r: (-Decimal(r["realized_pnl"]), r["route"])),
        "trades": trades,
        "days": days,
        "opportunities": opportunities,
        "decisions": decisions,
        "skipped": {"count": skipped_count, "would_realize": money(skipped_total),
                    "by_reason": {code: {"count": n, "would_realize": money(total)}
                                  for code, (n, total) in sorted(skipped_by_reason.items())}},
        "calibration": {kind: _calibration(points) for kind, points in calibration.items()},
        "equity_curve": curve,
        "limit_trips": dict(sorted(limit_trips.items())),
        "data_quality": dict(sorted(data_quality.items())),
    }


def executed_trades(portfolio):
    """The report's trades: the portfolio's, open or closed (a rejected one is a reason on its opportunity), in id order."""
    return Trade.objects.filter(portfolio=portfolio).exclude(status=Trade.REJECTED).order_by("id")


def _inventory(portfolio, held) -> dict:
    """The venue balances at their seed value and at market: what their price moves did to equity."""
    rows = [{"venue": b.venue, "currency": b.currency, "quantity": money(b.total), "usd_at_seed": money(b.usd_at_seed),
             "seed_value": money(b.seed_usd), "usd_mark": money(b.usd_mark), "marked_at": b.marked_ts,
             "value": money(None if b.usd_mark is None else b.total * b.usd_mark)}
            for b in Balance.objects.filter(portfolio=portfolio).exclude(venue=Balance.DESK).order_by("venue", "currency")]
    return {"seed_value": money(held.seed_value), "market_value": money(held.market_value),
            "revaluation": money(held.revaluation), "cash_start": money(portfolio.starting_value), "balances": rows}


def _hit(kind: str, trade: dict | None, shadow) -> bool | None:
    """Whether the predicted success came true: a forex position reached its target before its stop
    (its probability is of that), a binary won (ties and voids say nothing)."""
    if trade is not None:
        if trade["status"] != Trade.CLOSED:
            return None
        if kind == "binary":
            return {"win": True, "loss": False}.get(trade.get("outcome"))
        return trade["close_reason"] == "take_profit"
    if shadow is None or shadow.realized_pnl is None:
        return None
    if kind == "binary":
        return {"win": True, "loss": False}.get(shadow.outcome)
    return shadow.outcome == "take_profit"


def write_trades_csv(out_dir: Path) -> Path:
    """trades.csv beside report.json: the report's trades with the columns of the API's trade export."""
    out_dir.mkdir(parents=True, exist_ok=True)
    return TRADES.write(executed_trades(current_portfolio()), out_dir / "trades.csv")


def write_report(report: dict, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    path.write_text(json.dumps(report, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return path
