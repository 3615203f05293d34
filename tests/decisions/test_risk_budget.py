"""Trades sized to the risk budget: a trade's worst case (max_loss) fits the smaller of the
per-trade risk and what is left of the day's loss limit; the day's loss is net."""
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from decisions.models import RiskDay, RiskLimits
from decisions.risk import check_trade_approval, record_outcome

pytestmark = pytest.mark.django_db
NOON = datetime(2024, 3, 5, 12, 0, tzinfo=timezone.utc)
PORTFOLIO = D("100000")


def limits(**fields):
    row = RiskLimits.get_solo()
    for name, value in {"max_daily_loss": D("100"), "max_risk_per_trade_pct": D("1"), "min_trade_usd": D("10"),
                        **fields}.items():
        setattr(row, name, value)
    row.save()


def approve(size, loss_per_usd, *, kind="binary", exposure=D(0)):
    return check_trade_approval("EUR/USD", D(size), "buy", PORTFOLIO, kind=kind, now=NOON, loss_per_usd=D(loss_per_usd),
                                asset_exposure=exposure)


def test_a_100_dollar_budget_sizes_a_1000_dollar_binary_stake_to_100():
    """A binary loses its whole stake: with $100 of daily loss left, a $1,000 stake becomes $100."""
    limits()
    verdict = approve("1000", "1", kind="binary")
    assert verdict.approved and verdict.size_usd == D("100") and verdict.max_loss_usd == D("100")
    assert verdict.sizing["bounded_by"] == "risk_budget"
    assert RiskDay.objects.get().at_risk == D("100")
    refused = approve("1000", "1", kind="binary")  # the budget is all at risk now
    assert not refused.approved and "DAILY_LOSS" in refused.reasons


def test_a_100_dollar_budget_sizes_a_forex_position_by_its_stop_distance():
    """Entry 1.1000, stop 1.0980: 0.2 % of the notional is lost at the stop, so $100 of risk
    buys $55,000 of notional; at most 25 % of the portfolio ($25,000) goes on one asset."""
    limits(max_position_pct=D("60"))
    loss_per_usd = (D("1.1000") - D("1.0980")) / D("1.1000")
    verdict = approve("80000", loss_per_usd, kind="forex")
    assert verdict.size_usd == (D(100) / loss_per_usd) and abs(verdict.max_loss_usd - D(100)) < D("1e-20")
    limits(max_position_pct=D("25"))
    RiskDay.objects.update(at_risk=0)
    capped = approve("80000", loss_per_usd, kind="forex")
    assert capped.size_usd == D("25000") and capped.sizing["bounded_by"] == "position_limit"


def test_the_per_asset_limit_holds_across_open_positions():
    """$20,000 already open on EUR/USD against a 25 % ($25,000) limit: $5,000 of room; none left at $25,000."""
    limits(max_daily_loss=D("100000"), max_risk_per_trade_pct=D("100"))
    assert approve("10000", "0.001", kind="forex", exposure=D("20000")).size_usd == D("5000")
    full = approve("10000", "0.001", kind="forex", exposure=D("25000"))
    assert not full.approved and "POSITION_SIZE" in full.reasons


def test_the_day_loss_is_net_minus_60_plus_500_minus_40_is_a_day_up_400():
    limits()
    for pnl in ("-60", "500", "-40"):
        record_outcome(realized_pnl=D(pnl), at=NOON)
    verdict = approve("50", "1", kind="binary")
    assert verdict.approved and verdict.checks["daily_loss"]["used"] == "0"
    assert verdict.size_usd == D("50")


def test_a_size_the_budget_cuts_below_the_minimum_trade_is_refused():
    limits(max_daily_loss=D("5"))
    verdict = approve("1000", "1", kind="binary")
    assert not verdict.approved and verdict.reasons == ["RISK_BUDGET"]


def test_closing_a_trade_gives_its_worst_case_back_to_the_day_that_approved_it():
    limits()
    approve("60", "1", kind="binary")
    assert RiskDay.objects.get().at_risk == D("60")
    record_outcome(realized_pnl=D("-60"), at=NOON, released_usd=D("60"), approved_at=NOON)
    day = RiskDay.objects.get()
    assert day.at_risk == 0 and day.realized_pnl == D("-60")
    assert approve("1000", "1").size_usd == D("40")  # $100 − $60 lost
