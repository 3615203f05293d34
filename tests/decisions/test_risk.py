"""The risk manager on plain values, its invariants under any sequence, and under concurrency."""
import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from django.db import close_old_connections, connection
from hypothesis import HealthCheck, given, settings as hypothesis_settings, strategies as st

from decisions.models import RiskDay, RiskLimits, RiskState
from decisions.risk import check_trade_approval, record_outcome

D = Decimal
PORTFOLIO = D("100000")
NOON = datetime(2026, 3, 3, 12, 0, tzinfo=timezone.utc)


def approve(size="1000", kind="arbitrage", now=NOON, portfolio=PORTFOLIO):
    return check_trade_approval("BTC/USD", D(size), "buy", portfolio, kind=kind, now=now)


@pytest.mark.django_db
def test_a_calm_desk_approves_at_low_risk_and_reserves_the_slot():
    verdict = approve()
    assert verdict.approved and verdict.level == "LOW" and verdict.reasons == []
    assert verdict.checks["trades_today"] == {"used": "0", "limit": "50", "usage": "0.0000"}
    assert RiskDay.objects.get(date=NOON.date()).trades == 1


@pytest.mark.django_db
def test_each_limit_blocks_with_its_reason_code():
    RiskLimits.objects.create(max_trades_per_day=2, max_daily_loss=D("100"), max_consecutive_losses=2)
    assert approve().approved and approve().approved
    third = approve()
    assert not third.approved and third.reasons == ["TRADE_COUNT"] and third.level == "BLOCKED"
    assert RiskDay.objects.get(date=NOON.date()).limit_trips == {"TRADE_COUNT": 1}
    assert approve(size="30000", now=NOON + timedelta(days=1)).reasons == ["POSITION_SIZE"]  # 25 % of 100,000


@pytest.mark.django_db
def test_losses_trip_the_daily_budget_then_the_streak_and_its_cooldown():
    RiskLimits.objects.create(max_consecutive_losses=3, max_daily_loss=D("100"), cooldown_minutes=30)
    record_outcome(realized_pnl=D("-60"), at=NOON)
    record_outcome(realized_pnl=D("-50"), at=NOON)
    assert approve().reasons == ["DAILY_LOSS"]
    tomorrow = NOON + timedelta(days=1)
    record_outcome(realized_pnl=D("-1"), at=tomorrow)  # third loss in a row
    blocked = approve(now=tomorrow + timedelta(minutes=10))
    assert set(blocked.reasons) == {"LOSS_STREAK", "COOLDOWN"}
    after = approve(now=tomorrow + timedelta(minutes=31))
    assert after.approved and RiskState.get_solo().loss_streak == 0


@pytest.mark.django_db
def test_drawdown_is_measured_from_the_peak_not_the_start():
    assert approve(portfolio=D("120000")).approved  # new peak
    assert approve(portfolio=D("109000")).approved  # 9.2 % below the peak
    halted = approve(portfolio=D("107000"))  # 10.8 % below the peak, though above the start
    assert halted.reasons == ["DRAWDOWN_HALT"]


@pytest.mark.django_db
def test_risk_level_rises_with_usage_and_high_halves_the_size():
    RiskLimits.objects.create(max_trades_per_day=10)
    levels = [approve() for _ in range(10)]
    assert [v.level for v in levels][:5] == ["LOW"] * 5
    assert levels[5].level == "MEDIUM" and levels[8].level == "HIGH" and levels[8].size_multiplier == D("0.5")


@pytest.mark.django_db
def test_binary_stakes_get_extra_scrutiny():
    assert approve(size="2000", kind="binary").approved
    assert approve(size="2500", kind="binary").reasons == ["BINARY_STAKE"]
    limits = RiskLimits.get_solo()
    limits.max_trades_per_day = 4
    limits.save()
    approve(), approve()  # 3 of 4 used after these: usage 0.75 → MEDIUM, then 4th check at 0.75
    assert approve(size="100", kind="binary").level in ("MEDIUM", "HIGH")


@pytest.mark.django_db
def test_the_day_is_the_configured_time_zone_s_calendar_day():
    RiskLimits.objects.create(day_timezone="America/New_York", max_trades_per_day=1)
    late = datetime(2026, 3, 4, 4, 59, 59, 900000, tzinfo=timezone.utc)  # 23:59:59.9 in New York
    early = datetime(2026, 3, 4, 5, 0, 0, 100000, tzinfo=timezone.utc)  # 00:00:00.1 the next day
    assert approve(now=late).day == "2026-03-03" and approve(now=early).day == "2026-03-04"
    assert approve(now=early).reasons == ["TRADE_COUNT"]


@pytest.mark.django_db
def test_an_unknown_time_zone_is_refused_with_a_message():
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="unknown time zone"):
        RiskLimits(day_timezone="Mars/Olympus").full_clean()


events = st.lists(
    st.one_of(
        st.tuples(st.just("approve"), st.integers(min_value=0, max_value=40_000)),
        st.tuples(st.just("outcome"), st.integers(min_value=-80, max_value=60)),
        st.tuples(st.just("wait"), st.integers(min_value=1, max_value=90)),
    ),
    max_size=60,
)


@pytest.mark.django_db
@hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(events)
def test_no_sequence_exceeds_the_count_the_loss_budget_or_the_streak(sequence):
    """Whatever the order of approvals, outcomes and waits: never a slot past the count, nor an
    approval once the day's net loss reached its budget, nor one during a cooldown."""
    RiskDay.objects.all().delete()
    RiskState.objects.all().delete()
    RiskLimits.objects.all().delete()
    limits = RiskLimits.objects.create(max_trades_per_day=5, max_daily_loss=D("100"), max_consecutive_losses=3)
    now = NOON
    for action, value in sequence:
        if action == "approve":
            day = RiskDay.objects.filter(date=now.date()).first()
            state = RiskState.get_solo()
            paused = state.cooldown_until is not None and now < state.cooldown_until
            verdict = approve(size=str(value), now=now)
            if verdict.approved:
                assert day is None or (day.trades < limits.max_trades_per_day
                                       and max(D(0), -day.realized_pnl) + day.at_risk < limits.max_daily_loss)  # net
                assert not paused
                if state.loss_streak >= limits.max_consecutive_losses:  # only once its cooldown has run out
                    assert state.cooldown_until is not None and state.cooldown_until <= now
        elif action == "outcome":
            record_outcome(realized_pnl=D(value), at=now)
        else:
            now += timedelta(minutes=value)
        for day in RiskDay.objects.all():
            assert day.trades <= limits.max_trades_per_day


def free_connections() -> int:
    """How many more connections the database takes (PostgreSQL's default is 100 in all)."""
    if connection.vendor != "postgresql":
        return 100
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity")
        return cursor.fetchone()[0]


def approve_in_threads(approvals: int) -> list[bool]:
    """`approvals` approvals at once from as many threads as the server has connections for (at most one each)."""
    threads_wanted = max(2, min(approvals, free_connections() - 10))
    shares = [approvals // threads_wanted + (1 if i < approvals % threads_wanted else 0) for i in range(threads_wanted)]
    results = []
    barrier = threading.Barrier(threads_wanted)

    def worker(share):
        close_old_connections()
        try:
            barrier.wait(10)
            for _ in range(share):
                results.append(approve().approved)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


@pytest.mark.django_db(transaction=True)
def test_100_simultaneous_approvals_against_50_give_exactly_50():
    """PostgreSQL: row locks serialise the slot. SQLite: IMMEDIATE transactions serialise writers,
    so the limit holds there too (approvals wait for the write lock, within the busy timeout)."""
    RiskLimits.objects.create(max_trades_per_day=50)
    results = approve_in_threads(100)
    assert len(results) == 100
    assert sum(results) == 50
    assert RiskDay.objects.get(date=NOON.date()).trades == 50
