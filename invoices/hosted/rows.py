"""Model instances from rows read in plain SQL, for the reads every request on an
invoice page link makes.

Measured per request on PostgreSQL: the token lookup through the ORM (the invoice and
its customer, 69 columns) cost 1 ms of CPU, mostly compiling the same query again;
through raw() 0.65 ms, mostly resolving the columns again; this way 0.3 ms. The SQL
is written once per process from the models' metadata, and a row becomes an instance
through Model.from_db() after the converters the ORM itself applies to each column
(JSON decoded, SQLite's dates parsed...), so an instance read here equals one read
through the ORM.
"""

from dataclasses import dataclass
from functools import cache

from django.db import DEFAULT_DB_ALIAS, connection
from django.db.models import Model


@dataclass(frozen=True)
class ModelColumns:
    """Every column of a model, selected from its table under an alias."""

    model: type[Model]
    table: str  # "invoices_invoice i"
    select: str  # "i.id, i.customer_id, ..."
    attnames: tuple[str, ...]
    converters: tuple[tuple[int, tuple, object], ...]  # (index, converters, column)

    def instance(self, values) -> Model:
        """The model instance of `values`, a row's slice of this model's columns."""
        values = list(values)
        for index, converters, column in self.converters:
            for convert in converters:
                values[index] = convert(values[index], column, connection)
        return self.model.from_db(DEFAULT_DB_ALIAS, self.attnames, values)


@cache
def model_columns(model: type[Model], alias: str) -> ModelColumns:
    quote = connection.ops.quote_name
    fields = model._meta.concrete_fields
    converters = []
    for index, field in enumerate(fields):
        column = field.get_col(alias)
        found = connection.ops.get_db_converters(column) + column.get_db_converters(connection)
        if found:
            converters.append((index, tuple(found), column))
    return ModelColumns(
        model=model,
        table=f"{quote(model._meta.db_table)} {alias}",
        select=", ".join(f"{alias}.{quote(field.column)}" for field in fields),
        attnames=tuple(field.attname for field in fields),
        converters=tuple(converters),
    )
