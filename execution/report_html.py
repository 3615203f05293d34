"""The replay report as a page a person reads: report.html with its charts, openable offline.

Charts are drawn with matplotlib's Agg canvas (no pyplot global state, no display) into
PNG files next to the page, and embedded in it as data URIs so the page alone is enough.
The page is a Django template (`templates/replay/report.html`): every value is escaped.
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

from django.template.loader import render_to_string

CHARTS = ("equity", "drawdown", "calibration", "pnl_by_route")
TRADES_SHOWN = 500
ROUTES_SHOWN = 50
GREEN, RED, BLUE, GREY = "#1a7f37", "#cf222e", "#0969da", "#6e7781"


def utc(ms: int | None) -> str:
    """Epoch ms as a UTC time a person reads; blank for a time not known (an open trade's close)."""
    if ms is None:
        return ""
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _figure(width=8.0, height=3.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def _plain(text: str) -> str:
    """A name from the data as matplotlib draws it literally: a `$` starts mathtext otherwise,
    and a route named `a$b$c` or `$\\frac` made the whole report fail (or drew what it says)."""
    return text.replace("$", r"\$")


def _no_data(axes, text="no data") -> None:
    axes.text(0.5, 0.5, text, ha="center", va="center", transform=axes.transAxes, color=GREY)
    axes.set_xticks([])
    axes.set_yticks([])


def _times(points) -> list:
    return [datetime.fromtimestamp(p["ts"] / 1000, tz=timezone.utc) for p in points]


def _utc_axis(axes) -> None:
    """Date ticks in UTC whatever the machine's zone, concise so a day or a month both read well."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator(tz=timezone.utc)
    axes.xaxis.set_major_locator(locator)
    axes.xaxis.set_major_formatter(ConciseDateFormatter(locator, tz=timezone.utc))
    axes.set_xlabel("UTC")


def _equity(report: dict, figure) -> None:
    axes = figure.add_subplot()
    points = report["equity_curve"]
    if len(points) < 2:
        _no_data(axes)
    else:
        axes.step(_times(points), [float(p["equity"]) for p in points], where="post", color=BLUE)
        if all(p.get("starting_value") for p in points):  # the start, lifted as inventory is seeded
            axes.step(_times(points), [float(p["starting_value"]) for p in points], where="post", color=GREY,
                      linewidth=0.8, linestyle="--")
        elif report["start_equity"] is not None:
            axes.axhline(float(report["start_equity"]), color=GREY, linewidth=0.8, linestyle="--")
        axes.ticklabel_format(axis="y", style="plain", useOffset=False)
        _utc_axis(axes)
    axes.set_title("Equity (USD)")


def _drawdown(report: dict, figure) -> None:
    axes = figure.add_subplot()
    points = report["equity_curve"]
    if len(points) < 2:
        _no_data(axes)
    else:
        values = [-float(p["drawdown_pct"]) for p in points]
        axes.fill_between(_times(points), values, 0, step="post", color=RED, alpha=0.35, linewidth=0.8, edgecolor=RED)
        _utc_axis(axes)
    axes.set_title("Drawdown from the peak (%)")


def _calibration(report: dict, figure) -> None:
    for index, kind in enumerate(("forex", "binary"), start=1):
        axes = figure.add_subplot(1, 2, index)
        bins = report["calibration"][kind]["bins"]
        axes.set_title(f"{kind}: predicted vs realized")
        if not bins:
            _no_data(axes)
            continue
        axes.plot([0, 1], [0, 1], color=GREY, linewidth=0.8, linestyle="--")
        predicted = [float(b["predicted"]) for b in bins]
        realized = [float(b["realized"]) for b in bins]
        axes.plot(predicted, realized, marker="o", color=BLUE)
        for x, y, b in zip(predicted, realized, bins):
            axes.annotate(str(b["count"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=GREY)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1)
        axes.set_xlabel("predicted")
        axes.set_ylabel("realized hit rate")


def _pnl_by_route(report: dict, figure) -> None:
    axes = figure.add_subplot()
    routes = sorted(report["per_route"], key=lambda r: -abs(Decimal(r["realized_pnl"])))[:20]
    if not routes:
        _no_data(axes)
    else:
        routes.reverse()
        values = [float(r["realized_pnl"]) for r in routes]
        labels = [_plain(r["route"] if len(r["route"]) <= 48 else r["route"][:45] + "...") for r in routes]
        axes.barh(range(len(routes)), values, color=[GREEN if v >= 0 else RED for v in values])
        axes.set_yticks(range(len(routes)), labels, fontsize=7)
        axes.axvline(0, color=GREY, linewidth=0.8)
    axes.set_title("Realized P&L by route (USD, top 20)")


DRAW = {"equity": _equity, "drawdown": _drawdown, "calibration": _calibration, "pnl_by_route": _pnl_by_route}


def _settings_rows(settings: dict, prefix: str = "") -> list[tuple[str, str]]:
    rows = []
    for key, value in settings.items():
        if isinstance(value, dict):
            rows += _settings_rows(value, f"{prefix}{key}.")
        else:
            rows.append((f"{prefix}{key}", "" if value is None else str(value)))
    return rows


def _money(value) -> str:
    """Two decimals with thousands separators: report.json keeps ten, too many to read."""
    return "" if value is None else f"{Decimal(value):,.2f}"


def _percent(rate) -> str:
    return "n/a" if rate is None else f"{Decimal(rate) * 100:.1f} %"


def _money_row(row: dict, *keys: str) -> dict:
    return {**row, **{key: _money(row[key]) for key in keys}}


def _limit_effect(would_realize) -> str:
    """What a reason did to the desk: stopping a loser saved money, stopping a winner cost it."""
    amount = Decimal(would_realize or 0)
    if amount < 0:
        return f"saved {_money(-amount)}"
    return f"cost {_money(amount)}" if amount > 0 else "neither"


def write_html_report(report: dict, out_dir: Path) -> list[Path]:
    """Write the charts and report.html into `out_dir`; returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, images = [], {}
    for name in CHARTS:
        figure = _figure(8.0, 4.5 if name == "pnl_by_route" else 3.2)
        DRAW[name](report, figure)
        figure.tight_layout()
        path = out_dir / f"{name}.png"
        figure.savefig(path, format="png")
        images[name] = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
        written.append(path)
    summary = report["summary"]
    trades = [{**_money_row(t, "fees", "size_usd", "realized_pnl"), "opened": utc(t["opened_at"]), "closed": utc(t["closed_at"]),
               "loss": t["realized_pnl"] is not None and Decimal(t["realized_pnl"]) < 0,
               "venues_text": ", ".join(t["venues"])} for t in report["trades"][:TRADES_SHOWN]]
    max_drawdown = report["max_drawdown_pct"]
    context = {
        "report": report, "images": images,
        "span": f"{utc(report['recording']['start'])} to {utc(report['recording']['end'])} UTC",
        "simulated_to": utc(report["simulated_to"]),
        "figures": [
            ("Start equity", _money(report["start_equity"])), ("Final equity", _money(report["final_equity"])),
            ("Realized P&L", _money(report["realized_pnl"])), ("Unrealized P&L", _money(report["unrealized_pnl"])),
            ("Inventory revaluation", _money(report.get("inventory", {}).get("revaluation", "0"))),
            ("Max drawdown", "n/a" if max_drawdown is None else f"{Decimal(max_drawdown):.4f} %"),
            ("Trades closed", summary["trades"]),
            ("Won / lost / tied / void", " / ".join(str(summary.get(n, 0)) for n in ("wins", "losses", "ties", "voids"))),
            ("Win rate (of decided)", _percent(summary["win_rate"])),
            ("Fees", _money(summary["fees"])), ("Expected P&L", _money(summary["expected_pnl"])),
            ("Opportunities", summary["opportunities"]), ("Executed", summary["executed"]),
            ("Skipped", summary["skipped"]), ("Market events", summary["market_events"]),
        ],
        "per_kind": [{"kind": kind, **_money_row(figures, "realized_pnl", "expected_pnl", "fees"),
                      "win_rate": _percent(figures["win_rate"])} for kind, figures in report["per_kind"].items()],
        "per_route": [{**_money_row(row, "realized_pnl", "expected_pnl", "fees"), "win_rate": _percent(row["win_rate"])}
                      for row in report["per_route"][:ROUTES_SHOWN]],
        "routes_total": len(report["per_route"]),
        "days": [{**_money_row(day, "realized_pnl", "realized_loss"),
                  "trips": ", ".join(f"{code} {n}" for code, n in day["limit_trips"].items())} for day in report["days"]],
        "skipped_total": _money(report["skipped"]["would_realize"]),
        "skipped": [{"reason": code, "count": figures["count"], "would_realize": _money(figures["would_realize"]),
                     "effect": _limit_effect(figures["would_realize"])}
                    for code, figures in report["skipped"]["by_reason"].items()],
        "calibration": [{"kind": kind, "count": figures["count"], "brier": figures["brier"] or "n/a", "bins": figures["bins"]}
                        for kind, figures in report["calibration"].items()],
        "data_quality": sorted(report["data_quality"].items()),
        "settings": _settings_rows(report["settings"]),
        "trades": trades, "trades_total": len(report["trades"]), "trades_shown": len(trades),
    }
    page = out_dir / "report.html"
    page.write_text(render_to_string("replay/report.html", context), encoding="utf-8")
    written.append(page)
    return written
