"""Reading sweeps: the ranking of a sweep's finished runs, and the recent sweeps with their best setting."""
from __future__ import annotations

from decimal import Decimal

from .models import Sweep, SweepRun


def _key(run: SweepRun, part: str):
    """Higher P&L first, then the smaller drawdown, then the settings' canonical JSON: a total order."""
    figures = getattr(run, part)
    return -Decimal(figures["pnl"]), Decimal(figures["max_drawdown_pct"]), run.settings_key


def ranked_runs(sweep: Sweep) -> list[SweepRun]:
    """The sweep's finished runs by in-sample rank, each with `rank_in_sample` and `rank_out_of_sample` set."""
    runs = list(SweepRun.objects.filter(sweep=sweep, status=SweepRun.DONE))
    for rank, run in enumerate(sorted(runs, key=lambda r: _key(r, "out_of_sample")), start=1):
        run.rank_out_of_sample = rank
    runs.sort(key=lambda r: _key(r, "in_sample"))
    for rank, run in enumerate(runs, start=1):
        run.rank_in_sample = rank
    return runs


def status_counts(sweep: Sweep) -> dict[str, int]:
    counts = dict.fromkeys((SweepRun.DONE, SweepRun.FAILED, SweepRun.CANCELLED, SweepRun.RUNNING, SweepRun.QUEUED), 0)
    for status in SweepRun.objects.filter(sweep=sweep).values_list("status", flat=True):
        counts[status] += 1
    return counts


def recent_sweeps(limit: int = 20) -> list[dict]:
    """The latest sweeps, each with its run counts and its best in-sample setting (None before one finished)."""
    rows = []
    for sweep in Sweep.objects.all()[:limit]:
        ranked = ranked_runs(sweep)
        rows.append({"sweep": sweep, "counts": status_counts(sweep), "best": ranked[0] if ranked else None})
    return rows
