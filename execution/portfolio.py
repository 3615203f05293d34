"""The paper portfolio: cash, reservations, realized and unrealized P&L, equity and its curve.

Accounting, in the reporting currency (USD):
- the desk's cash account (`Balance` venue `desk`) starts at the starting value and
  moves by each closed trade's realized P&L; forex margin and binary stakes are reserved
  in it while positions are open (`free + reserved == total`, enforced by the database);
- arbitrage inventory (`Balance` rows per venue and currency) is money the desk holds:
  seeded at first use with `inventory_usd` worth of each currency (`seed_usd`, at the rate
  `usd_at_seed`), its quantities decide what a trade can fund (transfers are not
  simulated), and it is valued at market (`usd_mark`, marked from the feed's latest prices
  whenever the equity curve takes a point with a feed at hand: every monitor look);
- the starting value is the cash account's start plus the inventory at its seed value
  (it grows when a balance is first seeded: the desk held it from the start);
- an arbitrage trade's realized P&L is credited to the cash account as it closes, while
  the quantities it moved stay in the inventory: the inventory's *revaluation* is its
  market value − its seed value − Σ arbitrage realized P&L, i.e. the price moves of what
  it holds since seeded (leg leftovers included, which realized P&L values at fill time);
- equity = starting value + Σ realized P&L + Σ unrealized P&L of open positions +
  inventory revaluation, which must equal the cash account's total − Σ arbitrage realized
  P&L + the inventory at market + unrealized P&L to the cent (tested): the inventory's
  price risk shows in equity, its drawdown and the risk budget drawn from equity;
- drawdown is measured from the peak equity, not from the start.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import Count, Q, Sum
from django.utils import timezone

from decisions.models import RiskState
from scanners.models import FeedState, ScanRun
from trifecta_site.clock import ms_to_datetime
from trifecta_site.currency import usd_rates

from .models import Balance, EquitySnapshot, ExecutionSettings, Portfolio, Position, Trade, stored

ZERO, ONE = Decimal(0), Decimal(1)
CENT = Decimal("0.01")
RATIO = Decimal("0.0001")
OUTCOMES = ("wins", "losses", "ties", "voids")
BINARY_OUTCOMES = {"win": "wins", "loss": "losses", "tie": "ties", "void": "voids"}
MINUTE_MS = 60_000


def current_portfolio() -> Portfolio:
    """The open portfolio, created with the configured starting value on first use."""
    portfolio = Portfolio.objects.filter(ended_at__isnull=True).order_by("-id").first()
    if portfolio is not None:
        return portfolio
    with transaction.atomic():
        portfolio = Portfolio.objects.select_for_update().filter(ended_at__isnull=True).order_by("-id").first()
        if portfolio is None:
            portfolio = _open_portfolio(by=None)
    return portfolio


def _open_portfolio(*, by) -> Portfolio:
    value = ExecutionSettings.get_solo().starting_value
    portfolio = Portfolio.objects.create(starting_value=value, started_at=timezone.now(), reset_by=by)
    Balance.objects.create(portfolio=portfolio, venue=Balance.DESK, currency=portfolio.currency,
                           free=value, reserved=ZERO, total=value)
    return portfolio


def reset_portfolio(*, by=None) -> Portfolio:
    """Close the current portfolio (its trades and curve stay as history) and open a fresh one.

    Open positions of the old portfolio are left as they are, in its history; the risk
    state's equity peak and loss streak start over with the new account.
    """
    with transaction.atomic():
        Portfolio.objects.filter(ended_at__isnull=True).update(ended_at=timezone.now())
        Position.objects.filter(status=Position.OPEN).update(status=Position.CLOSED, close_reason="reset")
        Trade.objects.filter(status=Trade.OPEN).update(status=Trade.CLOSED, reject_reason="portfolio reset")
        state = RiskState.get_solo()
        state.peak_equity, state.loss_streak, state.cooldown_until = None, 0, None
        state.save()
        return _open_portfolio(by=by)


def cash_account(portfolio: Portfolio, *, lock: bool = False) -> Balance:
    rows = Balance.objects.filter(portfolio=portfolio, venue=Balance.DESK, currency=portfolio.currency)
    if lock:
        rows = rows.select_for_update()
    return rows.get()


def realized_total(portfolio: Portfolio) -> Decimal:
    return Trade.objects.filter(portfolio=portfolio, status=Trade.CLOSED).aggregate(
        total=Sum("realized_pnl"))["total"] or ZERO


def unrealized_total(portfolio: Portfolio) -> Decimal:
    return Position.objects.filter(trade__portfolio=portfolio, status=Position.OPEN).aggregate(
        total=Sum("unrealized_pnl"))["total"] or ZERO


def desk_exposure(portfolio: Portfolio | None = None) -> tuple[Decimal, set[str], int]:
    """The portfolio's value (equity: the cash account's total, which is the cash start +
    realized P&L, + unrealized P&L + the inventory at its seed value and its revaluation),
    the routes of its open positions and their count."""
    portfolio = portfolio or current_portfolio()
    positions = list(Position.objects.filter(trade__portfolio=portfolio, status=Position.OPEN)
                     .values_list("trade__route", "unrealized_pnl"))
    balances = list(Balance.objects.filter(portfolio=portfolio).values_list("venue", "currency", "total", "seed_usd",
                                                                            "usd_mark", "usd_at_seed"))
    cash = next(total for venue, currency, total, *_ in balances
                if venue == Balance.DESK and currency == portfolio.currency)
    held = inventory(portfolio, rows=[row[2:] for row in balances if row[0] != Balance.DESK])
    value = cash + sum((pnl for _, pnl in positions), ZERO) + held.seed_value + held.revaluation
    return value, {route for route, _ in positions}, len(positions)


@dataclass(frozen=True)
class Inventory:
    """The arbitrage inventory in USD: at its seed value, at market, and the difference that
    is not trading results (market − seed − Σ arbitrage realized P&L)."""

    seed_value: Decimal = ZERO
    market_value: Decimal = ZERO
    revaluation: Decimal = ZERO


def inventory(portfolio: Portfolio, *, rows: list | None = None, arbitrage_realized: Decimal | None = None) -> Inventory:
    """The inventory's figures at its latest marks (a balance never marked: at its seed rate);
    `rows`: its balances' (total, seed_usd, usd_mark, usd_at_seed) and `arbitrage_realized`: the
    closed arbitrage trades' realized P&L, where the caller read them."""
    if rows is None:
        rows = list(Balance.objects.filter(portfolio=portfolio).exclude(venue=Balance.DESK)
                    .values_list("total", "seed_usd", "usd_mark", "usd_at_seed"))
    if not rows:
        return Inventory()
    seed = sum((seed_usd or ZERO for _, seed_usd, _, _ in rows), ZERO)
    market = sum((total * (mark if mark is not None else at_seed or ZERO) for total, _, mark, at_seed in rows), ZERO)
    arbitrage = arbitrage_realized
    if arbitrage is None:
        arbitrage = Trade.objects.filter(portfolio=portfolio, status=Trade.CLOSED, kind="arbitrage").aggregate(
            total=Sum("realized_pnl"))["total"] or ZERO
    return Inventory(stored(seed), stored(market), stored(market - seed - arbitrage))


def has_inventory(portfolio: Portfolio | None = None) -> bool:
    portfolio = portfolio or current_portfolio()
    return Balance.objects.filter(portfolio=portfolio).exclude(venue=Balance.DESK).exists()


def mark_inventory(feed, *, ts: int, portfolio: Portfolio | None = None) -> list[tuple]:
    """Value each inventory balance at the feed's latest USD rate of its currency (one the feed
    cannot price keeps its last mark). Writes only the marks; returns the balances as marked,
    as `inventory` reads them: (total, seed_usd, usd_mark, usd_at_seed)."""
    portfolio = portfolio or current_portfolio()
    balances = list(Balance.objects.filter(portfolio=portfolio).exclude(venue=Balance.DESK)
                    .only("currency", "usd_mark", "marked_ts", "total", "seed_usd", "usd_at_seed"))
    if not balances:
        return []
    rates = usd_rates(feed, {b.currency for b in balances})
    moved = []
    for balance in balances:
        rate = rates.to_usd(ONE, balance.currency)
        if rate is not None and (balance.usd_mark is None or stored(rate) != balance.usd_mark):
            balance.usd_mark, balance.marked_ts = stored(rate), ts
            moved.append(balance)
    Balance.objects.bulk_update(moved, ["usd_mark", "marked_ts"])
    return [(b.total, b.seed_usd, b.usd_mark, b.usd_at_seed) for b in balances]


def asset_exposure(portfolio: Portfolio, symbol: str) -> Decimal:
    """The open positions' notional (stake for binaries) on one instrument, USD: what the position
    limit holds per asset."""
    return Position.objects.filter(trade__portfolio=portfolio, status=Position.OPEN, symbol=symbol).aggregate(
        total=Sum("trade__size_usd"))["total"] or ZERO


def settle(*, trade: Trade, realized_pnl: Decimal, closed_ts: int, release_usd: Decimal = ZERO, save: bool = True) -> None:
    """Close a trade: its realized P&L into the cash account, its reservation released (in the caller's transaction)."""
    realized_pnl = stored(realized_pnl)
    cash = cash_account(trade.portfolio, lock=True)  # Decimal arithmetic here: SQLite would add floats
    cash.reserved -= release_usd
    cash.total += realized_pnl
    cash.free = cash.total - cash.reserved
    cash.save(update_fields=["free", "reserved", "total"])
    trade.status = Trade.CLOSED
    trade.realized_pnl = realized_pnl
    trade.closed_ts = closed_ts
    trade.closed_at = ms_to_datetime(closed_ts)
    if save:
        trade.save(update_fields=["status", "realized_pnl", "closed_ts", "closed_at"])


def take_snapshot(*, ts: int, portfolio: Portfolio | None = None, feed=None) -> EquitySnapshot:
    """The minute's point of the equity curve (the latest look within a minute wins); with a
    feed, the inventory is marked to market first.

    Realized P&L is read from the cash account (it moves by exactly each closed trade's
    P&L; the accounting tests hold it to the sum over trades), and the peak from the
    latest point (peaks only rise; inventory seeded since lifts it by its seed value, so a
    drawdown is not hidden by capital added): a few indexed reads, however long the history.
    """
    portfolio = portfolio or current_portfolio()
    marked = None if feed is None else mark_inventory(feed, ts=ts, portfolio=portfolio)
    cash = cash_account(portfolio).total
    realized = cash - portfolio.starting_value
    open_positions = Position.objects.filter(trade__portfolio=portfolio, status=Position.OPEN).aggregate(
        unrealized=Sum("unrealized_pnl"), count=Count("id"))
    unrealized = open_positions["unrealized"] or ZERO
    held = inventory(portfolio, rows=marked)
    start = portfolio.starting_value + held.seed_value
    equity = start + realized + unrealized + held.revaluation
    minute = ts - ts % MINUTE_MS
    previous = EquitySnapshot.objects.filter(portfolio=portfolio).order_by("-minute_ts").values(
        "pk", "minute_ts", "peak_equity", "starting_value").first()
    peak = max(equity, start)
    if previous is not None:  # inventory seeded since lifts the peak by its seed value: capital added is no gain
        before = previous["starting_value"] if previous["starting_value"] is not None else portfolio.starting_value
        peak = max(peak, previous["peak_equity"] + start - before)
    drawdown = ((peak - equity) / peak * 100).quantize(Decimal("0.0001")) if peak else ZERO
    point = {"taken_at": timezone.now(), "cash": cash, "realized_pnl": realized, "unrealized_pnl": unrealized,
             "starting_value": start, "inventory_usd": held.market_value, "inventory_revaluation": held.revaluation,
             "equity": equity, "peak_equity": peak, "drawdown_pct": drawdown, "open_positions": open_positions["count"]}
    latest = None if previous is None else previous["minute_ts"]
    if latest == minute:  # a later look in the same minute: one guarded write
        if EquitySnapshot.objects.filter(pk=previous["pk"]).update(**point):
            return EquitySnapshot(pk=previous["pk"], portfolio=portfolio, minute_ts=minute, **point)
    elif latest is None or latest < minute:  # the minute's first point: one insert
        try:
            with transaction.atomic():
                return EquitySnapshot.objects.create(portfolio=portfolio, minute_ts=minute, **point)
        except IntegrityError:
            pass  # another monitor wrote this minute first: the latest look wins, as below
    snapshot, _ = EquitySnapshot.objects.update_or_create(portfolio=portfolio, minute_ts=minute, defaults=point)
    return snapshot


def equity_figures(portfolio: Portfolio | None = None) -> dict:
    """The latest point of the equity curve, as the `stats` event carries it (one query:
    the monitor has just taken it)."""
    portfolio = portfolio or current_portfolio()
    point = EquitySnapshot.objects.filter(portfolio=portfolio).order_by("-minute_ts").first()
    if point is None:
        return {"portfolio_id": portfolio.pk}
    return {"portfolio_id": portfolio.pk, "minute_ts": point.minute_ts, "equity": str(point.equity.quantize(CENT)),
            "cash": str(point.cash.quantize(CENT)), "realized_pnl": str(point.realized_pnl.quantize(CENT)),
            "unrealized_pnl": str(point.unrealized_pnl.quantize(CENT)), "peak_equity": str(point.peak_equity.quantize(CENT)),
            "drawdown_pct": str(point.drawdown_pct), "open_positions": point.open_positions,
            "starting_value": str((point.starting_value or portfolio.starting_value).quantize(CENT)),
            "inventory_usd": str(point.inventory_usd.quantize(CENT)),
            "inventory_revaluation": str(point.inventory_revaluation.quantize(CENT))}


def max_drawdown_pct(portfolio: Portfolio | None = None) -> Decimal:
    portfolio = portfolio or current_portfolio()
    worst = EquitySnapshot.objects.filter(portfolio=portfolio).order_by("-drawdown_pct").values_list(
        "drawdown_pct", flat=True).first()
    return worst or ZERO


def outcome_counts(rows) -> dict:
    """Wins, losses, ties and voids of closed trades, from `(kind, close_reason, realized_pnl)` rows.

    A binary is what it settled as (`win`, `loss`, `tie`, `void`); any other trade won with a
    positive P&L, lost with a negative one, and a flat one is a tie. A tie or a void is
    neither a win nor a loss (the stake came back): the win rate is wins / (wins + losses)."""
    counts = dict.fromkeys(OUTCOMES, 0)
    for kind, reason, pnl in rows:
        counts[outcome_of(kind, reason, pnl)] += 1
    return counts


def outcome_of(kind: str, close_reason: str | None, realized_pnl: Decimal | None) -> str:
    if kind == "binary" and close_reason in BINARY_OUTCOMES:
        return BINARY_OUTCOMES[close_reason]
    pnl = realized_pnl or ZERO
    return "wins" if pnl > 0 else "losses" if pnl < 0 else "ties"


def win_rate(wins: int, losses: int) -> str | None:
    """Wins over decided trades (ties and voids left out), 4 places; None before any is decided."""
    return str((Decimal(wins) / (wins + losses)).quantize(RATIO)) if wins + losses else None


def _outcome_figures(counts: dict) -> dict:
    counts = {name: counts[name] or 0 for name in OUTCOMES}
    return {**counts, "decided": counts["wins"] + counts["losses"], "win_rate": win_rate(counts["wins"], counts["losses"])}


_BINARY = Q(kind="binary")
OUTCOME_COUNTS = {  # `outcome_of` as the database counts it
    "wins": Count("id", filter=(_BINARY & Q(position__close_reason="win")) | (~_BINARY & Q(realized_pnl__gt=0))),
    "losses": Count("id", filter=(_BINARY & Q(position__close_reason="loss")) | (~_BINARY & Q(realized_pnl__lt=0))),
    "ties": Count("id", filter=(_BINARY & Q(position__close_reason="tie")) | (~_BINARY & Q(realized_pnl=0))),
    "voids": Count("id", filter=_BINARY & Q(position__close_reason="void")),
}


def desk_stats(portfolio: Portfolio | None = None) -> dict:
    """What the dashboard and the API show at a glance (decimals as strings). Per kind, per route
    and overall: trades, wins, losses, ties, voids, decided (wins + losses) and the win rate
    over decided trades (`outcome_of`)."""
    portfolio = portfolio or current_portfolio()
    closed = Trade.objects.filter(portfolio=portfolio, status=Trade.CLOSED)
    per_kind = {
        row["kind"]: {"trades": row["n"], **_outcome_figures(row), "realized_pnl": str((row["pnl"] or ZERO).quantize(CENT))}
        for row in closed.values("kind").annotate(n=Count("id"), pnl=Sum("realized_pnl"), **OUTCOME_COUNTS)
    }
    per_route = [
        {"route": row["route"], "kind": row["kind"], "trades": row["n"], **_outcome_figures(row),
         "realized_pnl": str((row["pnl"] or ZERO).quantize(CENT))}
        for row in closed.values("kind", "route").annotate(
            n=Count("id"), pnl=Sum("realized_pnl"), **OUTCOME_COUNTS).order_by("-pnl", "route")[:50]
    ]
    overall = closed.aggregate(n=Count("id"), **OUTCOME_COUNTS)
    realized, unrealized = realized_total(portfolio), unrealized_total(portfolio)
    cash = cash_account(portfolio)
    held = inventory(portfolio)
    start = portfolio.starting_value + held.seed_value
    return {
        "portfolio_id": portfolio.pk,
        "starting_value": str(start.quantize(CENT)), "cash_starting_value": str(portfolio.starting_value),
        "inventory_seed_value": str(held.seed_value.quantize(CENT)),
        "inventory_value": str(held.market_value.quantize(CENT)),
        "inventory_revaluation": str(held.revaluation.quantize(CENT)),
        "portfolio_value": str((start + realized + unrealized + held.revaluation).quantize(CENT)),
        "cash": str(cash.total.quantize(CENT)), "reserved": str(cash.reserved.quantize(CENT)),
        "realized_pnl": str(realized.quantize(CENT)), "unrealized_pnl": str(unrealized.quantize(CENT)),
        "max_drawdown_pct": str(max_drawdown_pct(portfolio)),
        "paper_trades": Trade.objects.filter(portfolio=portfolio).exclude(status=Trade.REJECTED).count(),
        "open_positions": Position.objects.filter(trade__portfolio=portfolio, status=Position.OPEN).count(),
        "closed_trades": overall["n"], **_outcome_figures(overall),
        "per_kind": per_kind, "per_route": per_route,
        "total_scans": ScanRun.objects.count(),
        "scans_per_kind": dict(ScanRun.objects.values_list("kind").annotate(n=Count("id")).values_list("kind", "n")),
        "feeds": {f"{row.feed}:{row.venue}": row.state for row in FeedState.objects.all()},
    }
