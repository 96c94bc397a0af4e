"""Hot queries compiled once.

Building a query with the ORM costs far more than running a lookup by unique index (0.9 ms
against 0.03 ms for the checkout status on SQLite). `Prepared` builds a read query once per
thread with marker arguments, keeps the SQL, and then only runs it: the rows come back as
`values_list` gives them, converted by Django's own converters (dates, decimals, JSON).

`insert(obj)` is `Model.objects.create`'s INSERT with the statement written once per model:
the rows a checkout invoice writes went through Django's save and insert compiler, which
was 40% of the web process's CPU for each invoice made.
"""

from __future__ import annotations

import threading

from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import Model


class Prepared:
    """`Prepared(build, arguments=1)`: `build(*markers)` returns the queryset (a
    `values_list(...)`, usually sliced `[:1]`); `first(*arguments)` runs it with the real
    arguments in the markers' places and returns its first row, or None; `all(*arguments)`
    returns all its rows."""

    def __init__(self, build, arguments: int = 1, *, integers: bool = False):
        """`integers`: the arguments are integers (keys), so the markers are too: numbers no
        key takes."""
        self.build = build
        if integers:
            self.markers = [-(2**62) - i for i in range(arguments)]
        else:
            self.markers = [f"\x00prepared-argument-{i}" for i in range(arguments)]
        self._local = threading.local()

    def _compiled(self):
        connection = connections[DEFAULT_DB_ALIAS]
        found = getattr(self._local, "compiled", None)
        if found is None or found[0] is not connection:
            compiler = self.build(*self.markers).query.get_compiler(DEFAULT_DB_ALIAS)
            sql, params = compiler.as_sql()
            template = [
                ("argument", self.markers.index(p)) if p in self.markers else ("value", p)
                for p in params
            ]
            if sorted(i for kind, i in template if kind == "argument") != list(
                range(len(self.markers))
            ):
                raise ValueError("each argument must appear once among the query's parameters")
            fields = [column for column, _, _ in compiler.select[: compiler.col_count]]
            found = (connection, compiler, sql, template, compiler.get_converters(fields))
            self._local.compiled = found
        return found

    def first(self, *arguments):
        rows = self._run(arguments, many=False)
        return rows[0] if rows else None

    def all(self, *arguments) -> list[tuple]:
        """Every row (build the queryset unsliced)."""
        return self._run(arguments, many=True)

    def _run(self, arguments, many: bool) -> list[tuple]:
        connection, compiler, sql, template, converters = self._compiled()
        params = [arguments[v] if kind == "argument" else v for kind, v in template]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if many else cursor.fetchmany(1)
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return [tuple(row) for row in rows]


_insert_plans: dict[tuple, tuple] = {}


def _insert_plan(model, connection, pk_set: bool):
    key = (model, connection.vendor, pk_set)
    plan = _insert_plans.get(key)
    if plan is None:
        meta = model._meta
        if meta.parents:
            raise ValueError(f"{model.__name__}: insert() does not write inherited models")
        fields = [
            f
            for f in meta.local_concrete_fields
            if not f.generated and (pk_set or f is not meta.auto_field)
        ]
        if any(hasattr(f, "get_placeholder") for f in fields):
            raise ValueError(f"{model.__name__}: a field needs its own placeholder")
        quote = connection.ops.quote_name
        sql = "INSERT INTO {} ({}) VALUES ({})".format(
            quote(meta.db_table),
            ", ".join(quote(f.column) for f in fields),
            ", ".join(["%s"] * len(fields)),
        )
        returning = (
            meta.db_returning_fields if connection.features.can_return_columns_from_insert else []
        )
        if returning:
            sql += " " + connection.ops.return_insert_columns(returning)[0]
        plan = _insert_plans[key] = (sql, fields, returning)
    return plan


def insert(obj: Model) -> Model:
    """Write the new `obj` as `obj.save(force_insert=True)` would (its fields' pre_save,
    the database's own value conversion, the primary key read back), without building the
    statement each time. For models without parents, signals or custom placeholders: this
    sends no pre_save or post_save signal."""
    connection = connections[DEFAULT_DB_ALIAS]
    meta = obj._meta
    pk_set = obj.pk is not None
    sql, fields, returning = _insert_plan(type(obj), connection, pk_set)
    values = [f.get_db_prep_save(f.pre_save(obj, True), connection) for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        if returning:
            row = connection.ops.fetch_returned_insert_columns(cursor, ())
            for value, field in zip(row, returning, strict=True):
                setattr(obj, field.attname, value)
        elif not pk_set:
            obj.pk = connection.ops.last_insert_id(cursor, meta.db_table, meta.pk.column)
    obj._state.adding = False
    obj._state.db = DEFAULT_DB_ALIAS
    return obj
