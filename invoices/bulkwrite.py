"""Writing many rows at once, for the sweeps' batches: rows_insert (what bulk_create
does) and rows_update (what bulk_update does), the same rows on every database.

On PostgreSQL, from COPY_FROM rows on, both go through COPY: Django's bulk_create and a
multi-row VALUES spend more in Python than the database spends writing (a payment
attempt batch prepared 534,000 values one by one, and the client-side cursor then
formatted and re-parsed each statement's thousands of parameters). COPY hands psycopg the
rows as they are. An update copies its rows into a temporary table of this session
(created when missing, emptied at each commit: no catalog change per call) and updates
from it. Below COPY_FROM, and on SQLite, the plain statements are used.
"""

import hashlib
import json
import operator
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.db import connection, models, transaction
from django.db.models.fields import AutoFieldMixin

COPY_FROM = 50
UPDATE_CHUNK = 500  # rows per UPDATE ... FROM (VALUES ...) statement below COPY_FROM

# The Python types psycopg adapts the way Django's get_db_prep_save would: a value of
# another type (a lazy translation, a Choices member, a naive datetime...) goes through
# get_db_prep_save.
_NATIVE = {
    "AutoField": (int,), "BigAutoField": (int,), "SmallAutoField": (int,),
    "IntegerField": (int,), "BigIntegerField": (int,), "SmallIntegerField": (int,),
    "PositiveIntegerField": (int,), "PositiveBigIntegerField": (int,),
    "PositiveSmallIntegerField": (int,), "BooleanField": (bool,),
    "CharField": (str,), "TextField": (str,), "EmailField": (str,), "SlugField": (str,),
    "URLField": (str,), "DecimalField": (Decimal,), "UUIDField": (uuid.UUID,),
    "DateField": (date,), "DurationField": (timedelta,),
}


def _adapter(field):
    """A function from the field's attribute value to what COPY writes."""
    if isinstance(field, models.JSONField):
        encoder = field.encoder
        return lambda value: None if value is None else json.dumps(value, cls=encoder)
    if field.is_relation:
        field = field.target_field
    kind = field.get_internal_type()
    if kind == "DateTimeField":
        def adapt(value):
            if value is None or (type(value) is datetime and value.tzinfo is not None):
                return value
            return field.get_db_prep_save(value, connection)
        return adapt
    types = _NATIVE.get(kind)
    if types is None:
        return lambda value: field.get_db_prep_save(value, connection)
    return lambda value: value if value is None or type(value) in types else (
        field.get_db_prep_save(value, connection)
    )


def _copying(count: int) -> bool:
    return connection.vendor == "postgresql" and count >= COPY_FROM


def rows_insert(model, objects: list, *, ignore_conflicts: bool = False) -> list:
    """Insert `objects` (unsaved instances of `model`; a model without an automatic
    primary key goes through bulk_create). Their primary keys are set, ascending in the
    list's order, except with `ignore_conflicts`: rows that would break a unique
    constraint are left out, as bulk_create(ignore_conflicts=True) does, and no key is
    set."""
    objects = list(objects)
    automatic = isinstance(model._meta.pk, AutoFieldMixin)
    if not automatic or not _copying(len(objects)):
        return model.objects.bulk_create(
            objects, batch_size=1000, ignore_conflicts=ignore_conflicts
        )
    meta = model._meta
    fields = [field for field in meta.concrete_fields if field is not meta.pk]
    for field in fields:  # what bulk_create's pre_save does (auto_now_add and the like)
        if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
            for obj in objects:
                field.pre_save(obj, add=True)
    if ignore_conflicts:
        _insert_skipping_conflicts(model, objects, fields)
        return objects
    with connection.wrap_database_errors, connection.cursor() as cursor:
        # Ids from the sequence first, sorted: ties on a timestamp keep the list's order.
        # The sequence is named in the statement: pg_get_serial_sequence() there was run
        # for every row (a catalog lookup each; measured: about 10 us an id, 5 times
        # what nextval costs).
        cursor.execute(
            f"SELECT nextval({_sequence(cursor, meta.db_table, meta.pk.column)}::regclass) "
            "FROM generate_series(1, %s)",
            [len(objects)],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        for pk, obj in zip(ids, objects, strict=True):
            obj.pk = pk
        try:
            _copy(cursor, meta.db_table, [meta.pk, *fields], objects)
        except Exception:
            for obj in objects:  # nothing was written: as unsaved as before
                obj.pk = None
            raise
    for obj in objects:
        obj._state.adding, obj._state.db = False, connection.alias
    return objects


def _row_maker(fields: list):
    """A function from an instance's values of `fields` to the row COPY writes, as
    _adapter's functions make it, without a call per value: the plain columns (not JSON,
    not datetime) that need adapting are found once per combination of the row's Python
    types (none when all are native); JSON is encoded, a datetime adapted when naive.
    Measured: an adapter call per value was about a third of writing a renewal."""
    adapters = [_adapter(field) for field in fields]
    dumps, datetimes, plain = [], [], []
    for index, field in enumerate(fields):
        if isinstance(field, models.JSONField):
            dumps.append((index, adapters[index]))
        elif (field.target_field if field.is_relation else field).get_internal_type() == (
            "DateTimeField"
        ):
            datetimes.append((index, adapters[index]))
        else:
            plain.append(index)
    native = [_NATIVE.get(
        (fields[index].target_field if fields[index].is_relation else fields[index])
        .get_internal_type()) for index in plain]
    to_adapt: dict = {}  # the Python types of a row's values -> plain columns to adapt

    def row(values) -> list:
        values = list(values)
        signature = tuple(map(type, values))
        indexes = to_adapt.get(signature)
        if indexes is None:
            indexes = to_adapt[signature] = [
                index for index, types in zip(plain, native, strict=True)
                if not (types is not None and signature[index] in (type(None), *types))
            ]
        for index in indexes:
            values[index] = adapters[index](values[index])
        for index, adapt in dumps:
            value = values[index]
            values[index] = (
                "{}" if value == {} else "[]" if value == [] else adapt(value)
            ) if value is not None else None
        for index, adapt in datetimes:
            value = values[index]
            if value is not None and (type(value) is not datetime or value.tzinfo is None):
                values[index] = adapt(value)
        return values

    return row


_sequences: dict = {}  # (database, table, column) -> the sequence, as an SQL literal


def _sequence(cursor, table: str, column: str) -> str:
    """The sequence of `table`'s automatic primary key, as a quoted SQL string."""
    key = (connection.settings_dict["NAME"], table, column)
    literal = _sequences.get(key)
    if literal is None:
        cursor.execute("SELECT quote_literal(pg_get_serial_sequence(%s, %s))", [table, column])
        literal = _sequences[key] = cursor.fetchone()[0]
    return literal


def _copy(cursor, table: str, fields: list, objects: list) -> None:
    """COPY the objects' values of `fields` into `table` (quoted here)."""
    quote = connection.ops.quote_name
    names = [field.attname for field in fields]
    row = _row_maker(fields)
    # The values straight from each instance's __dict__ (one C call a row; getattr went
    # through a descriptor per foreign key), getattr for an instance that lacks one.
    values_of = operator.itemgetter(*names) if len(names) > 1 else (
        lambda values: (values[names[0]],))
    listed = ", ".join(quote(field.column) for field in fields)
    with cursor.cursor.copy(f"COPY {quote(table)} ({listed}) FROM STDIN") as copy:
        write = copy.write_row
        for obj in objects:
            try:
                values = values_of(obj.__dict__)
            except KeyError:
                values = [getattr(obj, name) for name in names]
            write(row(values))


def _insert_skipping_conflicts(model, objects: list, fields: list) -> None:
    table, quote = model._meta.db_table, connection.ops.quote_name
    listed = ", ".join(quote(field.column) for field in fields)
    with _staged(table, fields, objects) as (cursor, staging):
        cursor.execute(
            f"INSERT INTO {quote(table)} ({listed}) SELECT {listed} FROM {staging} "
            f"ON CONFLICT DO NOTHING; DELETE FROM {staging}"
        )


def rows_update(model, objects: list, names: list[str]) -> None:
    """Write each object's own values of `names` (what QuerySet.bulk_update does; its CASE
    per row and field cost about 1.5 s of Python per 200 invoices)."""
    if not objects:
        return
    fields = [model._meta.get_field(name) for name in names]
    if _copying(len(objects)):
        _update_copy(model, objects, fields)
    else:
        _update_values(model, objects, fields)


def _update_values(model, objects: list, fields: list) -> None:
    """One UPDATE ... FROM (VALUES ...) per chunk."""
    quote, pk = connection.ops.quote_name, model._meta.pk
    # PostgreSQL types VALUES from the first row's parameters: cast them. SQLite needs
    # no cast (and a CAST to its type names would change the values).
    typed = connection.vendor == "postgresql"
    row = "(" + ", ".join(
        f"CAST(%s AS {field.cast_db_type(connection)})" if typed else "%s"
        for field in [pk, *fields]
    ) + ")"
    # SQLite names a VALUES list's columns column1, column2...: PostgreSQL is told so.
    columns = [f"column{n}" for n in range(1, len(fields) + 2)]
    alias = f"v({', '.join(columns)})" if typed else "v"
    table = quote(model._meta.db_table)
    assignments = ", ".join(
        f"{quote(field.column)} = v.{column}"
        for field, column in zip(fields, columns[1:], strict=True)
    )
    for start in range(0, len(objects), UPDATE_CHUNK):
        part = objects[start : start + UPDATE_CHUNK]
        params = []
        for obj in part:
            params.append(pk.get_db_prep_value(obj.pk, connection))
            params.extend(
                field.get_db_prep_save(getattr(obj, field.attname), connection) for field in fields
            )
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {assignments} FROM (VALUES {', '.join([row] * len(part))}) "
                f"AS {alias} WHERE {table}.{quote(pk.column)} = v.column1",
                params,
            )


def _update_copy(model, objects: list, fields: list) -> None:
    """COPY into this session's staging table for (table, columns), UPDATE from it."""
    quote, pk = connection.ops.quote_name, model._meta.pk
    table = quote(model._meta.db_table)
    assignments = ", ".join(f"{quote(field.column)} = s.{quote(field.column)}" for field in fields)
    with _staged(model._meta.db_table, [pk, *fields], objects) as (cursor, staging):
        cursor.execute(
            f"UPDATE {table} SET {assignments} FROM {staging} AS s "
            f"WHERE {table}.{quote(pk.column)} = s.{quote(pk.column)}; DELETE FROM {staging}"
        )


@contextmanager
def _staged(table: str, fields: list, objects: list):
    """The objects' values of `fields`, copied into a temporary table of this session
    for (table, columns): created when missing, emptied at each commit (the caller
    empties it after use, in case it is used twice in one transaction)."""
    quote = connection.ops.quote_name
    definition = ", ".join(
        f"{quote(field.column)} {field.cast_db_type(connection)}" for field in fields
    )
    # Named after the table and the columns' names and types: a migration that changes
    # a type gets a new staging table, even in a session that made the old one.
    name = f"staged_{hashlib.sha1(f'{table} {definition}'.encode()).hexdigest()[:16]}"
    staging = quote(name)
    with (
        transaction.atomic(savepoint=False),
        connection.wrap_database_errors,
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"CREATE TEMPORARY TABLE IF NOT EXISTS {staging} ({definition}) ON COMMIT DELETE ROWS"
        )
        _copy(cursor, name, fields, objects)
        yield cursor, staging
