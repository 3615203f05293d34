"""Statements written out for the desk's hot loop (deciding an opportunity, executing it).

Building a queryset and compiling its SQL costs the ORM 3-8 times the statement's own
round trip (0.4-0.8 ms against 0.1 ms on PostgreSQL, `make bench-decide`), and a decision
runs several. These helpers send plain SQL through Django's connection and give values
back through the same converters the ORM applies, so a Decimal is a Decimal and a time an
aware datetime on SQLite and PostgreSQL alike. On PostgreSQL parameters are bound on the
server (a statement is prepared once it ran `DATABASE_PREPARE_THRESHOLD` times on a
connection, psycopg's rule, so the server stops parsing and planning it) and `run` sends
several statements in one round trip (libpq's pipeline mode). Everything else uses the
ORM. Statement texts are kept once built (a process uses one database).
"""
from __future__ import annotations

import functools
import itertools
import os
import re
import weakref
from collections import deque
from typing import NamedTuple

from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models import Field, Model
from django.db.models.sql import Query
from psycopg import errors
from psycopg.adapt import PyFormat, Transformer
from psycopg.generators import fetch_many, send
from psycopg.pq import ExecStatus, TransactionStatus

IDLE, AUTO = TransactionStatus.IDLE, PyFormat.AUTO
TUPLES_OK, COMMAND_OK, FATAL_ERROR = ExecStatus.TUPLES_OK, ExecStatus.COMMAND_OK, ExecStatus.FATAL_ERROR


class Statement(NamedTuple):
    sql: str
    params: list
    fields: list[Field] = []  # what the returned columns are, in order (converted as the ORM converts them)
    one_by_one: tuple[str, int] | None = None  # an insert's single-row form and row count, for SQLite before 3.35
    parts: tuple = ()  # `together`'s statements, run one by one where they cannot be one


@functools.cache
def table(model: type[Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


@functools.cache
def column(model: type[Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def row_lock() -> str:
    """The clause that locks the selected rows until the transaction ends ('' where writers serialise anyway: SQLite)."""
    features = connection.features
    if features.has_select_for_no_key_update:
        return " FOR NO KEY UPDATE"
    return " FOR UPDATE" if features.has_select_for_update else ""


def _db():
    """This thread's connection itself: `django.db.connection` looks it up again on every attribute read."""
    return connections[DEFAULT_DB_ALIAS]


def _rows(cursor, statement: Statement) -> list[tuple]:
    """What the statement returned (SQLite's cursors, and Django's where queries are recorded)."""
    return _converted(cursor.fetchall(), statement.fields) if cursor.description is not None else []


def _converted(rows: list[tuple], fields: list[Field]) -> list[tuple]:
    if not rows or not fields:
        return rows
    compiler, converters = _converters(tuple(fields))
    return list(compiler.apply_converters(rows, converters)) if converters else rows


@functools.cache
def _converters(fields: tuple[Field, ...]):
    """The ORM's converters of these columns, looked up once (a process uses one database)."""
    compiler = Query(None).get_compiler(connection=connection)
    return compiler, compiler.get_converters([field.get_col(field.model._meta.db_table) for field in fields])


def run(*statements: Statement, commit: bool = False) -> list[list[tuple]]:
    """Run the statements in order, in one round trip where the database allows; the rows each returned.

    On PostgreSQL the round trip also carries the BEGIN of a transaction that starts with
    these statements, and with `commit` (the transaction's last statements) its COMMIT:
    Django's commit at the end of the atomic block then has nothing left to send. Only the
    outermost block's transaction is committed so; inside a savepoint `commit` is ignored.
    """
    db = _db()
    if db.vendor != "postgresql":
        cursor = db.cursor()
        try:
            return [_run_alone(cursor, statement) for statement in statements]
        finally:
            cursor.close()
    db.ensure_connection()
    db.validate_thread_sharing()
    db.validate_no_broken_transaction()
    commit = commit and _outermost_transaction(db)
    with db.wrap_database_errors:
        if db.queries_logged or db.execute_wrappers:
            return _run_recorded(db, statements, commit)
        return _pipelined(db.connection, statements, commit)


def _run_recorded(db, statements: tuple[Statement, ...], commit: bool) -> list[list[tuple]]:
    """Through Django's cursors, which record and wrap each query (DEBUG, `assertNumQueries`,
    an execute wrapper), in psycopg's pipeline mode."""
    from django.db.backends.postgresql.base import ServerBindingCursor

    cursors = [db._prepare_cursor(ServerBindingCursor(db.connection)) for _ in range(len(statements) + commit)]
    try:
        with db.connection.pipeline():
            for cursor, statement in zip(cursors, statements):
                cursor.execute(statement.sql, statement.params)
            if commit:
                cursors[-1].execute("COMMIT")  # its own cursor: the statements' results stay readable
        return [_rows(cursor, statement) for cursor, statement in zip(cursors, statements)]
    finally:
        for cursor in cursors:
            cursor.close()


@functools.lru_cache(maxsize=1024)
def _numbered(text: str) -> bytes:
    """`%s` placeholders as `$1`, `$2`, ... and `%%` as `%`: PostgreSQL's own form of the statement
    (Django's connections speak UTF-8)."""
    count = itertools.count(1)
    return "%".join(re.sub("%s", lambda _: f"${next(count)}", part) for part in text.split("%%")).encode()


class _Session:
    """What `_pipelined` keeps per PostgreSQL connection: its adapters, and the statements it
    prepared there (a new connection starts with none)."""

    LIMIT = 256  # statements prepared on one connection, at most (the desk's hot loop has some tens)

    def __init__(self, conn):
        self.transformer = Transformer.from_context(conn)
        self.prepared: dict[tuple, bytes] = {}
        self.runs: dict[tuple, int] = {}
        self.names = itertools.count()

    def name(self, key: tuple, threshold: int | None) -> tuple[bytes | None, bool]:
        """The statement's prepared name, and whether to prepare it now (psycopg's rule: after
        `threshold` runs; never where the threshold is None)."""
        if (name := self.prepared.get(key)) is not None:
            return name, False
        if threshold is None or len(self.prepared) >= self.LIMIT:
            return None, False
        runs = self.runs[key] = self.runs.get(key, 0) + 1
        if runs <= threshold:
            return None, False
        name = self.prepared[key] = b"_trifecta_%d" % next(self.names)
        return name, True


_sessions: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _pipelined(conn, statements: tuple[Statement, ...], commit: bool) -> list[list[tuple]]:
    """The statements (after the transaction's BEGIN where one starts here, and before its
    COMMIT with `commit`) sent through libpq's pipeline mode in one round trip.

    psycopg's cursors and pipeline cost 3-5 times the CPU of the same round trip through
    libpq itself (60-100 us for 1-3 statements against 15-20, bench/RESULTS.md), and a
    decision or an execution makes three such round trips. The commands are queued in
    libpq's buffer (pipeline mode sends nothing before the Sync, short of 64 kB) and go out
    with the Sync in one write: psycopg's own pipeline writes each one as it is queued, and
    the server, which runs each as it arrives, wakes for each. Values are adapted by
    psycopg's own transformer, errors are psycopg's (Django translates them as it does its
    own), and statements are prepared by psycopg's rule (`prepare_threshold`).
    """
    pgconn = conn.pgconn
    session = _sessions.get(conn)
    if session is None:
        session = _sessions[conn] = _Session(conn)
    transformer, threshold = session.transformer, conn.prepare_threshold
    commands: list = []  # (libpq's send function, its arguments), all adapted before anything is sent
    slots: list = []  # what each command's result is: a statement's index, a prepared key, or None
    if not conn.autocommit and pgconn.transaction_status == IDLE:
        commands.append((pgconn.send_query_params, (conn._get_tx_start_command(), None)))
        slots.append(None)
    for index, statement in enumerate(statements):
        text = _numbered(statement.sql)
        values = transformer.dump_sequence(statement.params, [AUTO] * len(statement.params))
        types, formats = transformer.types, transformer.formats
        key = (text, types)
        name, prepare = session.name(key, threshold)
        if prepare:
            commands.append((pgconn.send_prepare, (name, text, types)))
            slots.append(key)
        if name is None:
            commands.append((pgconn.send_query_params, (text, values, types, formats)))
        else:
            commands.append((pgconn.send_query_prepared, (name, values, formats)))
        slots.append(index)
    if commit:
        commands.append((pgconn.send_query_params, (b"COMMIT", None)))
        slots.append(None)
    try:
        with conn.lock:
            pgconn.enter_pipeline_mode()
            for send_command, arguments in commands:
                send_command(*arguments)
            pgconn.pipeline_sync()
            conn.wait(send(pgconn))
            results = [conn.wait(fetch_many(pgconn)) for _ in range(len(commands) + 1)]  # and the Sync's
            pgconn.exit_pipeline_mode()
    except BaseException:
        conn.close()  # a half-read pipeline cannot be resumed: Django's rollback fails and it reconnects
        raise
    rows: list[list[tuple]] = [[] for _ in statements]
    error = None
    for slot, (result, *_) in zip(slots, results):
        status = result.status
        if status == FATAL_ERROR:
            error = error or errors.error_from_result(result, encoding=conn.info.encoding)
        if isinstance(slot, tuple):
            if status != COMMAND_OK:  # not prepared after all (the pipeline stopped before it)
                del session.prepared[slot]
        elif slot is not None and status == TUPLES_OK:
            transformer.set_pgresult(result)
            rows[slot] = _converted(transformer.load_rows(0, result.ntuples, tuple), statements[slot].fields)
    if error is not None:
        raise error
    return rows


def _outermost_transaction(db) -> bool:
    """In the outermost atomic block, which commits when it ends (not in a savepoint, nor a test's transaction)."""
    return db.in_atomic_block and db.commit_on_exit and not db.savepoint_ids and not db.needs_rollback


def together(*statements: Statement) -> Statement:
    """Writes to different rows as one statement where the database allows; its rows are the last one's.

    On PostgreSQL the others become data-modifying CTEs of the last: each runs exactly once,
    all on the same snapshot, so none may touch a row another one writes. One statement
    instead of several saves the client a result to set up and read for each (psycopg's
    work per statement is most of the desk's own CPU in an execution). Elsewhere they run
    one after another.
    """
    *others, last = statements
    if not others:
        return last
    if _db().vendor != "postgresql":
        return last._replace(parts=statements)
    ctes = ", ".join(f"w{n} AS ({statement.sql})" for n, statement in enumerate(others))
    return Statement(f"WITH {ctes} {last.sql}", [p for statement in statements for p in statement.params], last.fields)


def _run_alone(cursor, statement: Statement) -> list[tuple]:
    if statement.parts:
        return [_run_alone(cursor, part) for part in statement.parts][-1]
    if statement.one_by_one is not None:  # no RETURNING here: one row at a time, its key from lastrowid
        single, count = statement.one_by_one
        width = len(statement.params) // count
        keys = []
        for row in range(count):
            cursor.execute(single, statement.params[row * width:(row + 1) * width])
            keys.append((cursor.lastrowid,))
        return keys
    cursor.execute(statement.sql, statement.params)
    return _rows(cursor, statement)


def fetch(sql: str, params, fields: list[Field]) -> list[tuple]:
    """Rows of `sql`, column i converted as the ORM converts `fields[i]` (a model field)."""
    return run(Statement(sql, params, fields))[0]


def execute(sql: str, params) -> None:
    run(Statement(sql, params))


@functools.cache
def _update_by_pk(model: type[Model], names: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{column(model, name)} = %s" for name in names)
    return f"UPDATE {table(model)} SET {assignments} WHERE {column(model, model._meta.pk.name)} = %s"


def update_statement(model: type[Model], pk, **values) -> Statement:
    """Write some fields of one row, by primary key."""
    db = _db()
    params = [model._meta.get_field(name).get_db_prep_save(value, db) for name, value in values.items()]
    return Statement(_update_by_pk(model, tuple(values)), [*params, pk])


def update(model: type[Model], pk, **values) -> None:
    run(update_statement(model, pk, **values))


@functools.cache
def _update_many(model: type[Model], names: tuple[str, ...], count: int) -> str:
    pk = column(model, model._meta.pk.name)
    row = "SELECT " + ", ".join(f"%s AS {name}" for name in ("pk", *names))
    assignments = ", ".join(f"{column(model, name)} = v.{name}" for name in names)
    return (f"UPDATE {table(model)} SET {assignments} FROM ({' UNION ALL '.join([row] * count)}) AS v "
            f"WHERE {table(model)}.{pk} = v.pk")


def update_many_statement(model: type[Model], rows: dict) -> Statement:
    """Write the same fields of several rows (primary key -> {field: value}) in one statement."""
    names = tuple(next(iter(rows.values())))
    fields = [model._meta.get_field(name) for name in names]
    db = _db()
    params = [value for pk, values in rows.items()
              for value in (pk, *(f.get_db_prep_save(values[f.name], db) for f in fields))]
    return Statement(_update_many(model, names, len(rows)), params)


@functools.cache
def _select(model: type[Model], where: str, order_by: str, lock: bool) -> str:
    names = ", ".join(connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)
    return (f"SELECT {names} FROM {table(model)} WHERE {where}" + (f" ORDER BY {order_by}" if order_by else "")
            + (row_lock() if lock else ""))


def select_statement(model: type[Model], where: str, params, *, order_by: str = "", lock: bool = False) -> Statement:
    """Whole rows of `model` (see `instances_from`); `where` and `order_by` are SQL with %s parameters."""
    return Statement(_select(model, where, order_by, lock), list(params), model._meta.concrete_fields)


def get_statement(model: type[Model], pk) -> Statement:
    return select_statement(model, f"{column(model, model._meta.pk.name)} = %s", [pk])


def instances_from(model: type[Model], rows: list[tuple]) -> list[Model]:
    names = [f.attname for f in model._meta.concrete_fields]
    return [model.from_db(connection.alias, names, row) for row in rows]


def instance_from(model: type[Model], rows: list[tuple]) -> Model | None:
    """The instance of the first row (None when there was none)."""
    return instances_from(model, rows[:1])[0] if rows else None


def get(model: type[Model], pk) -> Model | None:
    """One row by primary key as a model instance (None when absent)."""
    return instance_from(model, run(get_statement(model, pk))[0])


@functools.cache
def _insert_sql(model: type[Model], count: int, returning: bool, with_pk: bool = False) -> str:
    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    pk = connection.ops.quote_name(model._meta.pk.column)
    return f"INSERT INTO {table(model)} ({names}) VALUES {', '.join([row] * count)}" + (f" RETURNING {pk}" if returning else "")


def insert_statement(objs: list[Model]) -> Statement:
    """Insert instances of one model in one statement; give its rows to `inserted`.
    Instances that have their primary key already (`next_id`) are inserted with it."""
    model = type(objs[0])
    with_pk = objs[0].pk is not None
    fields = [f for f in model._meta.concrete_fields if with_pk or not f.primary_key]
    db = _db()
    params = [f.get_db_prep_save(f.pre_save(obj, add=True), db) for obj in objs for f in fields]
    one_by_one = None if db.features.can_return_rows_from_bulk_insert else (_insert_sql(model, 1, False, with_pk), len(objs))
    return Statement(_insert_sql(model, len(objs), True, with_pk), params, [model._meta.pk], one_by_one)


def next_id(model: type[Model]) -> int | None:
    """A primary key of `model` taken from its sequence in advance, so that its row and the rows
    that refer to it can be sent in one round trip (PostgreSQL; None where keys come only from
    the insert).

    Keys are taken `ID_BLOCK` at a time and handed out by this process, so taking one costs no
    round trip of its own. A key taken and not used (the process ended first) is a gap, never a
    clash; keys handed out by two processes interleave, so a key says nothing of the order in
    which rows were written (the tables that are listed by time have their own time column).
    """
    db = _db()
    if db.vendor != "postgresql":
        return None
    keys = _reserved.get((os.getpid(), db.alias, model))
    if not keys:
        keys = _reserved[(os.getpid(), db.alias, model)] = deque(row[0] for row in run(
            Statement(_next_ids_sql(model), []))[0])
    return keys.popleft()


ID_BLOCK = 50
_reserved: dict[tuple, deque] = {}  # (process, database alias, model) -> keys taken and not yet handed out


@functools.cache
def _next_ids_sql(model: type[Model]) -> str:
    return f"SELECT nextval(pg_get_serial_sequence('{table(model)}', '{model._meta.pk.column}')) FROM generate_series(1, {ID_BLOCK})"


def inserted(objs: list[Model], rows: list[tuple]) -> list[Model]:
    """The instances of an `insert_statement`, each with its primary key."""
    for obj, (value,) in zip(objs, rows):
        setattr(obj, obj._meta.pk.attname, value)
        obj._state.adding, obj._state.db = False, connection.alias
    return objs


def insert(objs: list[Model]) -> list[Model]:
    return inserted(objs, run(insert_statement(objs))[0])
