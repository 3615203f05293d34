"""Hand-written statements through Django's public cursor, for the deciding transaction's hot
statements: on PostgreSQL one round trip where the ORM takes several (reads merged, writes
in one statement with data-modifying CTEs), server-side bound and prepared as every
statement is (`DATABASES` options). SQLite, in-process and without data-modifying CTEs,
keeps the ORM path: `hand_written()` is the one place that chooses.

Values go through each field's own `pre_save` and `get_db_prep_save`, and rows read come
back through the field's `from_db_value`, so a row written or read here is the row the ORM
would write or read."""
from __future__ import annotations

from django.db import connection
from django.db.models.signals import post_save, pre_save


def hand_written() -> bool:
    """PostgreSQL takes the hand-written statements, SQLite the ORM's."""
    return connection.vendor == "postgresql"


def name(identifier: str) -> str:
    return connection.ops.quote_name(identifier)


def table(model) -> str:
    return name(model._meta.db_table)


def column(model, field_name: str) -> str:
    return name(model._meta.get_field(field_name).column)


def prepared(model, field_name: str, value):
    """A value as the ORM sends it for the field."""
    return model._meta.get_field(field_name).get_db_prep_save(value, connection)


def insert_rows(instances: list, *, returning: str = "id", parent: tuple[str, str] | None = None) -> tuple[str, list]:
    """`INSERT INTO table (columns) VALUES (...), ... RETURNING id` for new instances of one
    model, every concrete field but the auto primary key, as `bulk_create` sends them
    (`parent`: a foreign key field and the SQL that gives its value, for every row)."""
    model = type(instances[0])
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    params, rows = [], []
    for instance in instances:
        values = []
        for f in fields:
            if parent is not None and f.name == parent[0]:
                values.append(parent[1])
            else:
                values.append("%s")
                params.append(f.get_db_prep_save(f.pre_save(instance, True), connection))
        rows.append("(" + ", ".join(values) + ")")
    sql = (f"INSERT INTO {table(model)} ({', '.join(name(f.column) for f in fields)}) VALUES {', '.join(rows)}"
           f" RETURNING {column(model, returning)}")
    return sql, params


def update_row(model, pk, values: dict) -> tuple[str, list]:
    """`UPDATE table SET field = value, ... WHERE id = pk` with the fields' own preparation."""
    sets = ", ".join(f"{column(model, field)} = %s" for field in values)
    params = [prepared(model, field, value) for field, value in values.items()]
    return f"UPDATE {table(model)} SET {sets} WHERE {name(model._meta.pk.column)} = %s", [*params, pk]


def instance(model, field_names: list[str], values):
    """A model instance from a row read by hand (`Model.from_db`; fields left out are deferred),
    JSON decoded as the ORM decodes it."""
    read = {}
    for field_name, value in zip(field_names, values, strict=True):
        field = model._meta.get_field(field_name)
        read[field.attname] = field.from_db_value(value, None, connection) if hasattr(field, "from_db_value") else value
    loaded = [f.attname for f in model._meta.concrete_fields if f.attname in read]  # in the order from_db expects
    return model.from_db(connection.alias, loaded, [read[attname] for attname in loaded])


def fetch(sql: str, params: list) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


class Writes:
    """Row changes held to go as one statement at the end of a transaction (PostgreSQL: data-
    modifying CTEs, one round trip): updates merged per row, inserts in order (a row may name a
    row inserted before it as its parent: its key is read from that insert's RETURNING),
    increments as upserts. `send()` runs it, gives the new rows their ids, then calls what waits
    for them (`then`: events that name the ids)."""

    def __init__(self):
        self.updates: dict[tuple, dict] = {}
        self.inserts: list[tuple[list, tuple[str, object] | None]] = []
        self.increments: dict[tuple, tuple[dict, dict]] = {}
        self.callbacks: list = []

    def save(self, row, fields, *, signal: bool = True) -> None:
        """`row.save(update_fields=fields)`, with the values it has now; with `signal`, its
        `pre_save` now and its `post_save` once sent, as `save` sends them (`bulk_update`: none)."""
        if signal:
            pre_save.send(sender=type(row), instance=row, raw=False, using=connection.alias, update_fields=frozenset(fields))
            self.then(lambda: post_save.send(sender=type(row), instance=row, created=False, raw=False,
                                             using=connection.alias, update_fields=frozenset(fields)))
        self.update(type(row), row.pk, {f: getattr(row, f) for f in fields})

    def update(self, model, pk, values: dict) -> None:
        self.updates.setdefault((model, pk), {}).update(values)

    def insert(self, instances: list, *, parent: tuple[str, object] | None = None, signal: bool = False) -> None:
        """New rows of one model; `parent`: (foreign key field, an instance inserted here before);
        with `signal`, each row's `pre_save` and `post_save` as `save(force_insert=True)` sends
        them (`bulk_create`: none)."""
        if not instances:
            return
        self.inserts.append((list(instances), parent))
        for row in instances if signal else ():
            pre_save.send(sender=type(row), instance=row, raw=False, using=connection.alias, update_fields=None)
            self.then(lambda row=row: post_save.send(sender=type(row), instance=row, created=True, raw=False,
                                                     using=connection.alias, update_fields=None))

    def increment(self, model, unique: dict, increments: dict, values: dict) -> None:
        """Add `increments` to the row `unique` names (a unique constraint), created with them where
        absent, setting `values`: an upsert, so concurrent increments are never lost."""
        key = (model, tuple(sorted(unique.items())))
        held, _ = self.increments.setdefault(key, ({}, {}))
        for field, amount in increments.items():
            held[field] = held.get(field, 0) + amount
        self.increments[key][1].update(values)

    def then(self, callback) -> None:
        self.callbacks.append(callback)

    def statement(self) -> tuple[str, list, list]:
        """(sql, params, the inserted batches in the order the final SELECT returns their ids)."""
        ctes, params, selects = [], [], []
        for (model, pk), values in self.updates.items():
            text, values_params = update_row(model, pk, values)
            ctes.append(f"u{len(ctes)} AS ({text})")
            params += values_params
        inserted = {}
        for n, (instances, parent) in enumerate(self.inserts):
            parent_sql = None
            if parent is not None:
                parent_sql = f"(SELECT {name(type(parent[1])._meta.pk.column)} FROM i{inserted[id(parent[1])]})"
            text, insert_params = insert_rows(instances, parent=None if parent is None else (parent[0], parent_sql))
            ctes.append(f"i{n} AS ({text})")
            params += insert_params
            selects.append(f"SELECT {n}, {name(type(instances[0])._meta.pk.column)} FROM i{n}")
            for instance in instances:
                inserted[id(instance)] = n
        for (model, unique), (increments, values) in self.increments.items():
            text, upsert_params = upsert_increment(model, dict(unique), increments, values)
            ctes.append(f"a{len(ctes)} AS ({text})")
            params += upsert_params
        final = " UNION ALL ".join(selects) if selects else "SELECT NULL, NULL"
        return (f"WITH {', '.join(ctes)} {final}" if ctes else final), params, [batch for batch, _ in self.inserts]

    def send(self) -> None:
        if self.updates or self.inserts or self.increments:
            text, params, batches = self.statement()
            ids: dict[int, list] = {}
            for n, pk in fetch(text, params):
                if n is not None:
                    ids.setdefault(n, []).append(pk)
            for n, (instances, parent) in enumerate(self.inserts):
                for instance, pk in zip(instances, ids.get(n, []), strict=True):  # RETURNING keeps the VALUES' order
                    instance.pk = pk
                    if parent is not None:
                        setattr(instance, parent[0], parent[1])  # its key column from the parent's new id
        callbacks = self.callbacks
        self.updates, self.inserts, self.increments, self.callbacks = {}, [], {}, []
        for callback in callbacks:
            callback()


def upsert_increment(model, unique: dict, increments: dict, values: dict) -> tuple[str, list]:
    fields = [*unique, *increments, *values]
    row = {**unique, **increments, **values}
    columns = ", ".join(column(model, f) for f in fields)
    adds = [f"{column(model, f)} = {table(model)}.{column(model, f)} + EXCLUDED.{column(model, f)}" for f in increments]
    sets = [f"{column(model, f)} = EXCLUDED.{column(model, f)}" for f in values]
    text = (f"INSERT INTO {table(model)} ({columns}) VALUES ({', '.join(['%s'] * len(fields))})"
            f" ON CONFLICT ({', '.join(column(model, f) for f in unique)}) DO UPDATE SET {', '.join(adds + sets)}")
    return text, [prepared(model, f, row[f]) for f in fields]
