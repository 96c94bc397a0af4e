"""Hot queries compiled once.

Building a query with the ORM costs far more than running a lookup by unique index (0.9 ms
against 0.03 ms for the checkout status on SQLite). `Prepared` builds a read query once per
thread with marker arguments, keeps the SQL, and then only runs it: the rows come back as
`values_list` gives them, converted by Django's own converters (dates, decimals, JSON).

`insert(obj)` is `Model.objects.create`'s INSERT with the statement written once per model:
the rows a checkout invoice writes went through Django's save and insert compiler, which
was 40% of the web process's CPU for each invoice made. `update(obj, fields)` is the same for
`obj.save(update_fields=fields)`, and `Prepared.instances` reads whole model rows: together
they take the path from a payment to its webhook (a dozen reads and writes in the watcher's
transaction) past the query compiler.
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

    def instances(self, model: type[Model], *arguments) -> list[Model]:
        """Every row as an instance of `model`: build a `values_list(*columns(model))`."""
        names = columns(model)
        return [model.from_db(DEFAULT_DB_ALIAS, names, row) for row in self.all(*arguments)]

    def joined(self, models: tuple[type[Model], ...], *arguments) -> list[tuple]:
        """Every row as one instance per model (None for a model whose primary key came
        back NULL: an outer join that found nothing). Build a `values_list` of each model's
        `columns(model, path)`, in the order of `models`."""
        layout, start = [], 0
        for model in models:
            names = columns(model)
            pk_at = start + names.index(model._meta.pk.attname)
            layout.append((model, names, start, start + len(names), pk_at))
            start += len(names)
        return [
            tuple(
                None if row[pk_at] is None else model.from_db(DEFAULT_DB_ALIAS, names, row[a:b])
                for model, names, a, b, pk_at in layout
            )
            for row in self.all(*arguments)
        ]

    def _run(self, arguments, many: bool) -> list[tuple]:
        connection, compiler, sql, template, converters = self._compiled()
        params = [arguments[v] if kind == "argument" else v for kind, v in template]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            rows = cursor.fetchall() if many else cursor.fetchmany(1)
        if converters:
            rows = compiler.apply_converters(rows, converters)
        return [tuple(row) for row in rows]


def columns(model: type[Model], path: str = "") -> list[str]:
    """The names of `model`'s columns (its concrete fields), in the order `Model.from_db`
    takes them: a `values_list(*columns(Model))` reads rows that `instances` can load. With
    a `path` ("merchant__"), those of a related model, for `joined`."""
    return [path + f.attname for f in model._meta.concrete_fields]


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


_update_plans: dict[tuple, tuple] = {}


def update(
    obj: Model,
    fields: tuple[str, ...],
    *,
    only_if: tuple[str, object] | None = None,
    unless: tuple[str, object] | None = None,
) -> int:
    """Write `fields` (names) of `obj` to its row, as `obj.save(update_fields=fields)` would,
    with the statement built once per model and field list. A conditional write: with
    `only_if=(name, value)` only where that field holds that value (`.filter(name=value)`),
    with `unless=(name, value)` only where it does not (`.exclude(name=value)`, for a field
    that is never NULL). Returns the number of rows changed (0 or 1). Sends no signals and
    does not call the fields' pre_save (auto_now is not applied)."""
    connection = connections[DEFAULT_DB_ALIAS]
    model = type(obj)
    conditions = [(c[0], c[1], negate) for c, negate in ((only_if, False), (unless, True)) if c]
    key = (model, connection.vendor, fields, tuple((name, neg) for name, _, neg in conditions))
    plan = _update_plans.get(key)
    if plan is None:
        meta = model._meta
        quote = connection.ops.quote_name
        written = [meta.get_field(name) for name in fields]
        if any(f.primary_key or not f.concrete or hasattr(f, "get_placeholder") for f in written):
            raise ValueError(f"{model.__name__}: update() writes plain concrete fields only")
        tested = [meta.get_field(name) for name, _, _ in conditions]
        sql = "UPDATE {} SET {} WHERE {} = %s".format(
            quote(meta.db_table),
            ", ".join(f"{quote(f.column)} = %s" for f in written),
            quote(meta.pk.column),
        )
        for field, (_, _, negate) in zip(tested, conditions, strict=True):
            test = f"{quote(field.column)} = %s"
            sql += f" AND NOT ({test})" if negate else f" AND {test}"
        plan = _update_plans[key] = (sql, written, tested)
    sql, written, tested = plan
    values = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in written]
    values.append(obj._meta.pk.get_db_prep_value(obj.pk, connection))
    values += [
        f.get_db_prep_save(c[1], connection) for f, c in zip(tested, conditions, strict=True)
    ]
    with connection.cursor() as cursor:
        cursor.execute(sql, values)
        return cursor.rowcount
