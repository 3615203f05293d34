"""The sweep report: the settings ranked in and out of sample, as report.json and report.html.

Only what the recording and the settings decide appears in report.json (no wall times, no
worker names, no database ids), rows in rank order with ties broken by the settings'
canonical JSON: the same sweep run again writes the same bytes, whichever workers ran it
and however often a replay was delivered.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from django.template.loader import render_to_string

from .models import Sweep, SweepRun
from .selectors import ranked_runs, status_counts

FORMAT = "trifecta-sweep-report/1"
CHART_W, CHART_H, MARGIN = 640, 380, 56


def build_sweep_report(sweep: Sweep) -> dict:
    counts = status_counts(sweep)
    ranking = [{"rank_in_sample": run.rank_in_sample, "rank_out_of_sample": run.rank_out_of_sample,
                "combination": run.combination, "settings": run.settings, "in_sample": run.in_sample,
                "out_of_sample": run.out_of_sample, "whole": run.whole} for run in ranked_runs(sweep)]
    unfinished = [{"combination": run.combination, "status": run.status, "error": run.error}
                  for run in SweepRun.objects.filter(sweep=sweep).exclude(status=SweepRun.DONE).order_by("index")]
    return {
        "format": FORMAT,
        "recording": {"name": sweep.recording_name, "start": sweep.start_ts, "end": sweep.end_ts},
        "split": f"{sweep.split.normalize():f}", "split_ts": sweep.split_ts,
        "grid": sweep.grid, "base": sweep.base,
        "complete": counts[SweepRun.DONE] == sum(counts.values()),
        "runs": {"total": sum(counts.values()), **counts},
        "ranking": ranking,
        "best": ranking[0] if ranking else None,
        "not_done": unfinished,
    }


def _utc(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _scale(values: list[Decimal], size: int) -> tuple:
    low, high = min([*values, Decimal(0)]), max([*values, Decimal(0)])
    if low == high:
        low, high = low - 1, high + 1
    return low, high, lambda v: float((v - low) / (high - low)) * (size - 2 * MARGIN) + MARGIN


def scatter(ranking: list[dict]) -> dict | None:
    """In-sample against out-of-sample P&L, one point per setting labelled by its in-sample rank:
    a setting that only fits the past sits far right and low."""
    if not ranking:
        return None
    xs = [Decimal(row["in_sample"]["pnl"]) for row in ranking]
    ys = [Decimal(row["out_of_sample"]["pnl"]) for row in ranking]
    x_low, x_high, sx = _scale(xs, CHART_W)
    y_low, y_high, sy = _scale(ys, CHART_H)

    def flip(y):
        return CHART_H - y

    points = [{"x": round(sx(x), 1), "y": round(flip(sy(y)), 1), "rank": row["rank_in_sample"],
               "title": f"#{row['rank_in_sample']}: in-sample {x:.2f}, out-of-sample {y:.2f}",
               "best": row["rank_in_sample"] == 1} for row, x, y in zip(ranking, xs, ys)]
    return {"width": CHART_W, "height": CHART_H, "points": points, "zero_x": round(sx(Decimal(0)), 1),
            "zero_y": round(flip(sy(Decimal(0))), 1), "left": MARGIN, "right": CHART_W - MARGIN, "top": MARGIN,
            "bottom": CHART_H - MARGIN,
            "plot_w": CHART_W - 2 * MARGIN, "plot_h": CHART_H - 2 * MARGIN, "x_low": f"{x_low:.2f}", "x_high": f"{x_high:.2f}",
            "y_low": f"{y_low:.2f}", "y_high": f"{y_high:.2f}", "mid_x": CHART_W // 2, "mid_y": CHART_H // 2}


def write_sweep_report(report: dict, out_dir: Path) -> list[Path]:
    """report.json and report.html (its chart inline SVG: the page alone opens offline)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "report.json"
    data.write_text(json.dumps(report, sort_keys=True, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    by_out = sorted(report["ranking"], key=lambda row: row["rank_out_of_sample"])
    context = {"report": report, "chart": scatter(report["ranking"]), "by_out_of_sample": by_out,
               "span": f"{_utc(report['recording']['start'])} to {_utc(report['recording']['end'])} UTC",
               "split_at": _utc(report["split_ts"]),
               "rows": [{**row, "label": ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(row["combination"].items()))}
                        for row in report["ranking"]]}
    labels = {row["rank_in_sample"]: row["label"] for row in context["rows"]}
    context["by_out_of_sample"] = [{**row, "label": labels[row["rank_in_sample"]]} for row in by_out]
    page = out_dir / "report.html"
    page.write_text(render_to_string("sweeps/report.html", context), encoding="utf-8")
    return [data, page]
