"""The hot loop's written-out statements give what the ORM gives, on SQLite and PostgreSQL."""
from decimal import Decimal as D

import pytest
from django.db import ProgrammingError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from decisions.models import Decision, RiskDay
from execution.models import Balance
from execution.portfolio import current_portfolio
from trifecta_site import statements as sql

from ..execution.test_executors import opportunity

pytestmark = pytest.mark.django_db


def decisions(opp, now):
    return [Decision(opportunity=opp, layer=layer, verdict="x", reasons=["A"], figures={"n": "1.5"}, score=D("0.25"),
                     size_usd=D("12.34567890"), decided_at=now, market_ts=5) for layer in ("agent", "risk", "governor")]


@pytest.mark.parametrize("returning", [True, False], ids=["RETURNING", "one row at a time"])
def test_an_insert_gives_every_row_its_key_and_stores_what_the_orm_would(returning, monkeypatch):
    if not returning and connection.vendor != "sqlite":
        pytest.skip("only SQLite before 3.35 lacks RETURNING: the SQLite pass runs this")
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", returning)
    opp, now = opportunity("arbitrage", {"symbol": "BTC/USDT"}), timezone.now()
    rows = sql.insert(decisions(opp, now))
    stored = {d.pk: d for d in Decision.objects.filter(opportunity=opp)}
    assert sorted(stored) == sorted(d.pk for d in rows) and len(stored) == 3
    for row in rows:
        assert (stored[row.pk].layer, stored[row.pk].size_usd, stored[row.pk].figures) == (row.layer, D("12.34567890"), {"n": "1.5"})


def test_rows_come_back_converted_as_the_orm_converts_them():
    opp, now = opportunity("arbitrage", {"symbol": "BTC/USDT"}), timezone.now()
    Decision.objects.bulk_create(decisions(opp, now))
    orm = Decision.objects.filter(opportunity=opp).order_by("id")
    fetched = sql.instances_from(Decision, sql.run(sql.select_statement(
        Decision, f"{sql.column(Decision, 'opportunity')} = %s", [opp.pk], order_by="id"))[0])
    assert [(d.pk, d.score, d.size_usd, d.decided_at, d.figures, d.reasons) for d in fetched] == \
           [(d.pk, d.score, d.size_usd, d.decided_at, d.figures, d.reasons) for d in orm]


def test_statements_run_together_in_order_each_with_its_rows():
    portfolio = current_portfolio()
    a = Balance.objects.create(portfolio=portfolio, venue="a", currency="BTC", free=D("1"), total=D("1"))
    b = Balance.objects.create(portfolio=portfolio, venue="b", currency="BTC", free=D("2"), total=D("2"))
    day = RiskDay.objects.create(date=timezone.now().date())
    moved, updated, read = sql.run(
        sql.update_many_statement(Balance, {a.pk: {"free": D("0.5"), "total": D("0.75")},
                                            b.pk: {"free": D("2.125"), "total": D("2.125")}}),
        sql.update_statement(RiskDay, day.pk, trades=7),
        sql.get_statement(RiskDay, day.pk))
    assert moved == [] and updated == []
    assert sql.instance_from(RiskDay, read).trades == 7
    assert {(x.venue, x.free, x.total) for x in Balance.objects.filter(pk__in=[a.pk, b.pk])} == \
           {("a", D("0.5"), D("0.75")), ("b", D("2.125"), D("2.125"))}


def test_a_value_the_driver_cannot_send_is_refused_before_anything_is_sent():
    """Nothing of the round trip reaches the server, and its connection (and transaction) go on."""
    day = RiskDay.objects.create(date=timezone.now().date())
    with pytest.raises(ProgrammingError, match="cannot adapt|not supported"):
        sql.run(sql.get_statement(RiskDay, day.pk), sql.Statement("SELECT %s", [object()]))
    assert sql.instance_from(RiskDay, sql.run(sql.get_statement(RiskDay, day.pk))[0]).pk == day.pk


def test_a_round_trip_larger_than_the_sockets_buffers_sends_and_reads_it_all():
    """libpq holds a round trip's statements until its Sync (past 64 kB it starts sending): here
    six megabytes of them, more than the socket's buffers hold."""
    day = RiskDay.objects.create(date=timezone.now().date())
    statement = sql.select_statement(RiskDay, "id = %s AND %s <> ''", [day.pk, "x" * 20_000])
    results = sql.run(*[statement] * 300)
    assert len(results) == 300 and all(sql.instance_from(RiskDay, rows).pk == day.pk for rows in results)


@pytest.mark.parametrize("returning", [True, False], ids=["RETURNING", "one row at a time"])
def test_writes_to_different_rows_go_as_one_statement_with_the_last_ones_rows(returning, monkeypatch):
    if not returning and connection.vendor != "sqlite":
        pytest.skip("only SQLite before 3.35 lacks RETURNING: the SQLite pass runs this")
    monkeypatch.setattr(type(connection.features), "can_return_rows_from_bulk_insert", returning)
    portfolio = current_portfolio()
    a = Balance.objects.create(portfolio=portfolio, venue="a", currency="BTC", free=D("1"), total=D("1"))
    day = RiskDay.objects.create(date=timezone.now().date())
    opp, now = opportunity("arbitrage", {"symbol": "BTC/USDT"}), timezone.now()
    rows = decisions(opp, now)
    combined = sql.together(sql.update_many_statement(Balance, {a.pk: {"free": D("0.5"), "total": D("0.75")}}),
                            sql.update_statement(RiskDay, day.pk, trades=7), sql.insert_statement(rows))
    if connection.vendor == "postgresql":
        assert combined.sql.startswith("WITH ") and not combined.parts
    ids, = sql.run(combined)
    sql.inserted(rows, ids)
    assert sorted(Decision.objects.filter(opportunity=opp).values_list("pk", flat=True)) == sorted(d.pk for d in rows)
    assert RiskDay.objects.get(pk=day.pk).trades == 7
    assert Balance.objects.filter(pk=a.pk).values_list("free", "total").get() == (D("0.5"), D("0.75"))
    assert sql.together(combined) is combined


def test_a_key_taken_in_advance_lets_a_row_and_the_rows_that_refer_to_it_go_in_one_statement():
    from execution.models import Fill, Trade

    if connection.vendor != "postgresql":
        assert sql.next_id(Trade) is None  # SQLite: keys come from the insert only
        return
    sql._reserved.clear()
    with CaptureQueriesContext(connection) as queries:
        keys = [sql.next_id(Trade) for _ in range(sql.ID_BLOCK + 1)]
    assert len(queries) == 2  # one round trip a block of keys, which this process hands out
    assert keys[:-1] == list(range(keys[0], keys[0] + sql.ID_BLOCK)) and keys[-1] > keys[-2]
    key, now = keys[0], timezone.now()
    opp, portfolio = opportunity("arbitrage", {"symbol": "BTC/USDT"}), current_portfolio()
    fields = dict(portfolio=portfolio, kind="arbitrage", route="r", symbol="BTC/USDT", venues=["a"], opened_ts=1,
                  opened_at=now, size_usd=D("10"), fees_usd=D("0.01"))
    trade = Trade(pk=key, opportunity=opp, **fields)
    fill = Fill(trade=trade, leg=1, venue="a", symbol="BTC/USDT", side="buy", requested=D("1"), quantity=D("1"),
                price=D("10"), notional=D("10"), fee=D("0.01"), fee_rate=D("0.001"), filled_ts=1, evidence={})
    fills, = sql.run(sql.together(sql.insert_statement([trade]), sql.insert_statement([fill])))
    sql.inserted([fill], fills)
    assert Trade.objects.get(opportunity=opp).pk == key  # the key taken, not one the insert drew
    assert Fill.objects.get(pk=fill.pk).trade_id == key
    drawn = Trade.objects.create(opportunity=opportunity("arbitrage", {"symbol": "BTC/USDT"}), **fields)
    assert drawn.pk > keys[-1]  # the insert's own key comes after every key taken: never a clash


@pytest.mark.django_db(transaction=True)
def test_the_last_statements_of_a_transaction_carry_its_commit_and_a_savepoint_is_never_committed_early():
    from django.db import transaction

    day = RiskDay.objects.create(date=timezone.now().date())
    others = connection.copy()  # a second session: sees only what is committed
    try:
        def seen():
            with others.cursor() as cursor:
                cursor.execute(f"SELECT trades FROM {sql.table(RiskDay)} WHERE id = %s", [day.pk])
                return cursor.fetchone()[0]

        hooks = []
        with transaction.atomic():
            sql.run(sql.update_statement(RiskDay, day.pk, trades=3), commit=True)
            if connection.vendor == "postgresql":
                assert seen() == 3  # committed with the statement: Django's commit has nothing left to do
            with transaction.atomic():
                sql.run(sql.update_statement(RiskDay, day.pk, trades=4), commit=True)
                assert seen() != 4  # a savepoint's statements wait for the outer transaction
            transaction.on_commit(lambda: hooks.append("ran"))
        assert seen() == 4 and hooks == ["ran"]
        with pytest.raises(RuntimeError), transaction.atomic():
            sql.run(sql.update_statement(RiskDay, day.pk, trades=5))
            raise RuntimeError("rolled back")
        assert seen() == 4
    finally:
        others.close()


def prepared_texts() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [text for text, in cursor.fetchall()]


def test_the_hot_statements_are_prepared_on_postgresql_after_a_few_runs():
    """Django turns psycopg's preparing off; DATABASE_PREPARE_THRESHOLD (default 5) turns it on."""
    if connection.vendor != "postgresql":
        pytest.skip("prepared statements are PostgreSQL's")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    if threshold is None:
        pytest.skip("DATABASE_PREPARE_THRESHOLD is empty here: nothing is prepared")
    day = RiskDay.objects.create(date=timezone.now().date())
    statement = sql.select_statement(RiskDay, "id = %s AND realized_loss >= %s", [day.pk, 0])  # this test's own text
    head = statement.sql.split(" WHERE ")[0] + " WHERE id = $1 AND realized_loss"
    for _ in range(threshold):
        assert sql.instance_from(RiskDay, sql.run(statement)[0]).pk == day.pk
    assert not any(text.startswith(head) for text in prepared_texts())
    for _ in range(2):  # prepared by the next run, then run as prepared
        assert sql.instance_from(RiskDay, sql.run(statement)[0]).pk == day.pk
    assert [text for text in prepared_texts() if text.startswith(head)] == [sql._numbered(statement.sql).decode()]


def test_a_statement_whose_preparing_an_error_skipped_is_prepared_later():
    """Statements after an error in the same round trip are not run: neither is their PREPARE."""
    from django.db import IntegrityError, transaction

    if connection.vendor != "postgresql" or connection.settings_dict["OPTIONS"]["prepare_threshold"] is None:
        pytest.skip("prepared statements are PostgreSQL's, where DATABASE_PREPARE_THRESHOLD is set")
    threshold = connection.settings_dict["OPTIONS"]["prepare_threshold"]
    day = RiskDay.objects.create(date="2026-01-02")
    statement = sql.select_statement(RiskDay, "id = %s AND trades >= %s", [day.pk, 0])
    for _ in range(threshold):
        sql.run(statement)
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.run(sql.insert_statement([RiskDay(date="2026-01-02")]), statement)  # its PREPARE was due here
    assert not any(text.startswith("SELECT") and "trades >= $2" in text for text in prepared_texts())
    assert sql.instance_from(RiskDay, sql.run(statement)[0]).pk == day.pk
    assert any("trades >= $2" in text for text in prepared_texts())


@pytest.mark.django_db(transaction=True)
def test_a_connection_lost_mid_round_trip_is_an_operational_error_and_the_next_run_reconnects():
    from django.db import OperationalError

    if connection.vendor != "postgresql":
        pytest.skip("a server connection to lose is PostgreSQL's")
    day = RiskDay.objects.create(date="2026-01-02")
    others = connection.copy()
    try:
        with others.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [connection.connection.info.backend_pid])
    finally:
        others.close()
    with pytest.raises(OperationalError):
        sql.run(sql.get_statement(RiskDay, day.pk))
    connection.close_if_unusable_or_obsolete()  # what a worker does after a task, a web request at its end
    assert sql.instance_from(RiskDay, sql.run(sql.get_statement(RiskDay, day.pk))[0]).pk == day.pk


@pytest.mark.parametrize("together", [False, True], ids=["alone", "in one round trip"])
def test_errors_come_as_djangos_and_a_broken_transaction_runs_nothing_more(together):
    """libpq's pipeline is used where nobody records queries: what Django's cursor wrapper
    does (its exceptions, its broken-transaction check) still holds."""
    from django.db import IntegrityError, transaction
    from django.db.transaction import TransactionManagementError

    RiskDay.objects.create(date="2026-01-02")
    duplicate = sql.insert_statement([RiskDay(date="2026-01-02")])
    statements = [sql.get_statement(RiskDay, 0), duplicate] if together else [duplicate]
    assert not connection.queries_logged
    with transaction.atomic():
        with pytest.raises(IntegrityError), transaction.atomic(savepoint=False):  # marks the outer block broken
            sql.run(*statements)
        with pytest.raises(TransactionManagementError):
            sql.run(sql.get_statement(RiskDay, 0))
    assert RiskDay.objects.count() == 1
