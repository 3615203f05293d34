"""What a scanner returns: plain values, before anything is stored.

A `Candidate` carries exactly the figures of the `manage.py scan --json` contract
(README, "Scan contract"), as Decimals; `as_json()` turns them into that contract's
line (every number a decimal string). The scan task stores candidates as
`Opportunity` rows; the scan command prints them.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .feeds.base import TIMEFRAME_MS

ARBITRAGE, FOREX, BINARY = "arbitrage", "forex", "binary"


def signal_bar_ms(figures: dict) -> int:
    """The bar period a bar-based signal was computed on (0: a quote-based one).

    A bar is current until the next one is due, so the prices behind such a signal stay
    current that long (plus the desk's grace): freshness is judged by the data's cadence.
    """
    if figures.get("bar_ms") is not None:
        return int(figures["bar_ms"])
    return TIMEFRAME_MS.get(figures.get("timeframe") or "", 0)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


@dataclass
class Candidate:
    kind: str  # ARBITRAGE, FOREX or BINARY
    ts: int  # scan time, epoch ms
    observed_at: int  # epoch ms of the oldest market value the figures rest on
    risk_score: Decimal  # 0-100, see the scanner's docstring
    rank: Decimal  # larger is better within a kind; the top N per scan are kept
    figures: dict[str, Any]  # the kind's contract fields (symbol, venue(s), prices, ...)

    @property
    def symbol(self) -> str:
        return self.figures.get("symbol") or " ".join(leg["symbol"] for leg in self.figures.get("path", []))

    @property
    def venues(self) -> list[str]:
        f = self.figures
        if "buy_venue" in f:
            return [f["buy_venue"], f["sell_venue"]]
        return [f["venue"]] if "venue" in f else []

    def as_json(self) -> dict:
        return _plain({"ts": self.ts, "kind": self.kind, "risk_score": self.risk_score, **self.figures})


@dataclass
class ScanResult:
    kind: str
    ts: int
    candidates: list[Candidate] = field(default_factory=list)  # every one at or above thresholds, best first
    instruments_seen: int = 0
    evaluated: int = 0  # routes, cycles or signals the scanner computed this pass
    skipped: Counter = field(default_factory=Counter)  # reason -> count (stale_quote, crossed_quote, ...)

    def top(self, n: int) -> list[Candidate]:
        return self.candidates[:n]
