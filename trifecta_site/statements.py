"""Statements written out for the desk's hot loop (deciding an opportunity, executing it).

Building a queryset and compiling its SQL costs the ORM 3-8 times the statement's own
round trip (0.4-0.8 ms against 0.07-0.1 ms on PostgreSQL, `make bench-decide`), and a
decision runs several. These helpers send plain SQL through Django's connection and give
values back through the same converters the ORM applies, so a Decimal is a Decimal and a
time an aware datetime on SQLite and PostgreSQL alike. Everything else uses the ORM.
Statement texts are kept once built (a process uses one database).
"""
from __future__ import annotations

import functools

from django.db import connection
from django.db.models import Field, Model
from django.db.models.sql import Query


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


def _cursor():
    """A cursor that binds parameters on the server on PostgreSQL: psycopg then prepares a
    statement run repeatedly, and the server stops parsing and planning it every time."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.ensure_connection()
    return connection._prepare_cursor(ServerBindingCursor(connection.connection))


def fetch(sql: str, params, fields: list[Field]) -> list[tuple]:
    """Rows of `sql`, column i converted as the ORM converts `fields[i]` (a model field)."""
    with _cursor() as cursor:
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    compiler = Query(None).get_compiler(connection=connection)
    converters = compiler.get_converters([field.get_col(field.model._meta.db_table) for field in fields])
    return list(compiler.apply_converters(rows, converters)) if converters and rows else rows


def execute(sql: str, params) -> int:
    """Run one write; the number of rows it changed."""
    with _cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def update(model: type[Model], pk, **values) -> int:
    """Write some fields of one row, by primary key, in one statement."""
    fields = [model._meta.get_field(name) for name in values]
    params = [f.get_db_prep_save(values[f.name], connection) for f in fields]
    return execute(_update_by_pk(model, tuple(values)), [*params, pk])


@functools.cache
def _update_by_pk(model: type[Model], names: tuple[str, ...]) -> str:
    assignments = ", ".join(f"{column(model, name)} = %s" for name in names)
    return f"UPDATE {table(model)} SET {assignments} WHERE {column(model, model._meta.pk.name)} = %s"


@functools.cache
def _select_by_pk(model: type[Model]) -> str:
    names = ", ".join(connection.ops.quote_name(f.column) for f in model._meta.concrete_fields)
    return f"SELECT {names} FROM {table(model)} WHERE {column(model, model._meta.pk.name)} = %s"


def get(model: type[Model], pk) -> Model | None:
    """One row by primary key as a model instance (None when absent)."""
    fields = model._meta.concrete_fields
    rows = fetch(_select_by_pk(model), [pk], fields)
    return model.from_db(connection.alias, [f.attname for f in fields], rows[0]) if rows else None


@functools.cache
def _insert_returning_pk(model: type[Model], count: int) -> str:
    if not connection.features.can_return_rows_from_bulk_insert:  # SQLite before 3.35
        raise NotImplementedError("this database cannot return the keys of a multi-row insert")
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    names = ", ".join(connection.ops.quote_name(f.column) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    pk = connection.ops.quote_name(model._meta.pk.column)
    return f"INSERT INTO {table(model)} ({names}) VALUES {', '.join([row] * count)} RETURNING {pk}"


def insert(objs: list[Model]) -> list[Model]:
    """Insert instances of one model in one statement and give each its primary key."""
    model = type(objs[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    params = [f.get_db_prep_save(f.pre_save(obj, add=True), connection) for obj in objs for f in fields]
    pk = model._meta.pk
    with _cursor() as cursor:
        cursor.execute(_insert_returning_pk(model, len(objs)), params)
        ids = [r[0] for r in cursor.fetchall()]
    for obj, value in zip(objs, ids):
        setattr(obj, pk.attname, value)
        obj._state.adding, obj._state.db = False, connection.alias
    return objs
