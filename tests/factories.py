"""Rows the tests build again and again: opportunities, the three verdicts that approve one,
and trades. Each factory writes the row as the desk would, with what a test names overridden."""
from decimal import Decimal as D

from decisions.models import Decision
from execution.models import Trade
from execution.portfolio import current_portfolio
from scanners.models import Opportunity
from trifecta_site.clock import ms_to_datetime

T0 = 1_700_000_000_000  # a Tuesday, 22:13:20 UTC; desk-smoke's start

# A cross-venue arbitrage as a scan of tests/fixtures/recordings/desk-smoke stores it.
DESK_SMOKE_ARBITRAGE = {"type": "cross_venue", "symbol": "BTC/USDT", "buy_venue": "binance", "sell_venue": "kraken",
                        "buy_price": "37000.20", "sell_price": "37010.0", "size": "0.001", "net_pct": "0.6",
                        "expected_profit": "60", "expected_profit_usd": "60"}


def opportunity(kind: str = "arbitrage", figures: dict | None = None, *, route: str = "r", direction: str = "",
                symbol: str | None = None, ts: int = T0, **fields) -> Opportunity:
    """An opportunity observed and detected at market time `ts` (ms)."""
    figures = figures or {}
    at = ms_to_datetime(ts)
    row = {"kind": kind, "type": figures.get("type", ""), "symbol": symbol or figures.get("symbol", ""), "venues": [],
           "direction": direction, "route": route, "risk_score": D("10"), "figures": figures, "rank": 1,
           "observed_at": at, "market_ts": ts, "detected_at": at, **fields}
    return Opportunity.objects.create(**row)


def desk_smoke_arbitrage(route: str) -> Opportunity:
    """desk-smoke's BTC/USDT route binance > kraken, as the desk's worker processes find it in the recording."""
    return opportunity("arbitrage", DESK_SMOKE_ARBITRAGE, route=route, venues=["binance", "kraken"], net_pct=D("0.6"))


def approve(opp: Opportunity, size_usd=D("1000"), *, at=None) -> list[Decision]:
    """The three verdicts (agent, risk, governor) that send `opp` to execution."""
    common = {"opportunity": opp, "decided_at": at or opp.detected_at, "market_ts": opp.market_ts,
              "size_usd": D(size_usd)}
    return Decision.objects.bulk_create([
        Decision(layer="agent", verdict="approve", **common),
        Decision(layer="risk", verdict="approved", level="LOW", **common),
        Decision(layer="governor", verdict="execute", **common),
    ])


def approved_desk_smoke(count: int, size_usd=D("37")) -> list[int]:
    """`count` desk-smoke arbitrages on routes route-0.. each approved for execution; their ids."""
    ids = []
    for n in range(count):
        opp = desk_smoke_arbitrage(f"route-{n}")
        approve(opp, size_usd)
        ids.append(opp.pk)
    return ids


def trade(opp: Opportunity, *, status: str = Trade.OPEN, portfolio=None, **fields) -> Trade:
    """A trade of `opp` opened at its market time, on the current portfolio unless given."""
    row = {"portfolio": portfolio or current_portfolio(), "opportunity": opp, "kind": opp.kind, "route": opp.route,
           "symbol": opp.symbol, "status": status, "opened_ts": opp.market_ts, "opened_at": opp.detected_at, **fields}
    return Trade.objects.create(**row)
