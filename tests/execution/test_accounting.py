"""The accounting invariant over replays: at every snapshot, to the cent,
equity = starting value + Σ realized P&L + unrealized P&L + inventory revaluation, where the
starting value is the cash start + the inventory at its seed value; the cash account and the
inventory at market agree (equity = cash − Σ arbitrage realized P&L + inventory + unrealized)."""
from decimal import Decimal as D

import pytest

from decisions.models import Controls, RiskLimits
from execution.desk import run_cycle
from execution.models import Balance, EquitySnapshot, Trade
from execution.portfolio import cash_account, current_portfolio
from scanners import services
from scanners.feeds.replay import RecordingReader, ReplayClock, ReplayFeed
from scanners.models import ArbitrageSettings, BinarySettings, ForexSettings

from ..conftest import FIXTURES, shared_recording

pytestmark = pytest.mark.django_db
CENT = D("0.01")


def permissive_desk():
    """Auto-execute with thresholds low enough that the desk trades a lot (losses included)."""
    Controls.objects.update_or_create(pk=1, defaults={"auto_execute": True})
    RiskLimits.objects.update_or_create(pk=1, defaults={"max_trades_per_day": 10_000, "max_daily_loss": D("1000000"),
                                                        "max_consecutive_losses": 1000, "drawdown_halt_pct": D("100")})
    ArbitrageSettings.objects.update_or_create(pk=1, defaults={"min_net_pct": D("-1"), "auto_min_net_pct": D("-1"),
                                                               "auto_min_profit_usd": D("-1000000"), "auto_max_risk": D("100"),
                                                               "max_risk_score": D("100")})
    ForexSettings.objects.update_or_create(pk=1, defaults={"auto_min_confidence": D("0.6"), "auto_min_risk_reward": D("1")})
    BinarySettings.objects.update_or_create(pk=1, defaults={"min_probability": D("0.5"), "auto_min_probability": D("0.5")})
    services.forget_scan_state()


def replay(path, *, every_ms: int, limit_ms: int | None = None, kinds=("arbitrage", "forex", "binary")):
    reader = RecordingReader(path)
    feed = ReplayFeed(reader, ReplayClock.stepped(reader.start))
    end = reader.end if limit_ms is None else min(reader.end, reader.start + limit_ms)
    checked = 0
    for ts in range(reader.start, end + 1, every_ms):
        feed.at(ts)
        run_cycle(feed=feed, kinds=kinds)
        checked += check_invariant()
    return checked


def check_invariant() -> int:
    portfolio = current_portfolio()
    snapshot = EquitySnapshot.objects.filter(portfolio=portfolio).order_by("-minute_ts").first()
    realized = sum(Trade.objects.filter(portfolio=portfolio, status=Trade.CLOSED).values_list("realized_pnl", flat=True),
                   D(0))  # summed in Decimal: SQLite's SUM adds floats
    assert abs(snapshot.realized_pnl - realized) < D("1e-8")  # SQLite keeps 15 significant digits; exact on PostgreSQL
    inventory = Balance.objects.filter(portfolio=portfolio).exclude(venue=Balance.DESK)
    seeded = sum((b.seed_usd for b in inventory), D(0))
    at_market = sum((b.total * b.usd_mark for b in inventory), D(0))
    assert (snapshot.starting_value - (portfolio.starting_value + seeded)).quantize(CENT) == 0
    assert (snapshot.equity - (snapshot.starting_value + realized + snapshot.unrealized_pnl
                               + snapshot.inventory_revaluation)).quantize(CENT) == 0
    cash = cash_account(portfolio)
    assert (cash.total - portfolio.starting_value - realized).quantize(CENT) == 0
    arbitrage = sum(Trade.objects.filter(portfolio=portfolio, status=Trade.CLOSED, kind="arbitrage")
                    .values_list("realized_pnl", flat=True), D(0))
    assert (snapshot.inventory_usd - at_market).quantize(CENT) == 0
    assert (snapshot.equity - (cash.total - arbitrage + snapshot.inventory_usd + snapshot.unrealized_pnl)).quantize(CENT) == 0
    for balance in Balance.objects.all():  # SQLite keeps 15 significant digits: within 1e-8, exact on PostgreSQL
        assert abs(balance.total - balance.free - balance.reserved) < D("1e-8"), balance
    return 1


def test_accounting_holds_over_the_fixture_replay():
    permissive_desk()
    checked = replay(FIXTURES / "recordings" / "two-venues", every_ms=5_000, kinds=("arbitrage",))
    assert checked > 10 and Trade.objects.exclude(status=Trade.REJECTED).exists()


@pytest.mark.shared
@pytest.mark.parametrize("name, every_ms, limit_ms, kinds", [
    ("crypto-xvenue-2022-12-13", 60_000, 6 * 3_600_000, ("arbitrage", "binary")),
    ("fx-gbpusd-1m-2012-02", 60_000, 86_400_000, ("forex", "binary")),
    ("coinbase-triangles-2019-08-16", 30_000, None, ("arbitrage",)),
])
def test_accounting_holds_over_a_long_real_replay(name, every_ms, limit_ms, kinds):
    permissive_desk()
    checked = replay(shared_recording(name), every_ms=every_ms, limit_ms=limit_ms, kinds=kinds)
    trades = Trade.objects.exclude(status=Trade.REJECTED)
    assert checked > 100 and trades.exists(), Trade.objects.values_list("reject_reason", flat=True)[:5]
