"""When a test clock's work falls due, asked of the database in one statement.

Each kind of work a test clock runs (automations.clocks.CLOCK_WORK) says where its next
moment is as a list of candidates: the earliest non-empty `field` of some rows, shifted
by `after`, or a moment already known. `dues_first` answers every kind at once, one
scalar subquery per candidate in a single SELECT: a simulation asks thousands of times,
and one round trip costs less than a dozen.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import QuerySet


@dataclass(frozen=True)
class Due:
    """A candidate moment: the earliest `field` of `rows` (rows without one left out),
    plus `after`.

    `rows` may be a function returning the queryset, and `key` a name for its SQL: a
    candidate with a key is compiled once (building and compiling a queryset costs more
    than running it), so the key must name everything its SQL depends on (the clock)."""
    rows: "QuerySet | Callable[[], QuerySet]"
    field: str
    after: timedelta = timedelta(0)
    key: str | None = None

    def compiled(self):
        """(sql, params, convert): the subquery, and what turns its raw value into the
        field's (SQLite returns datetimes as text)."""
        if self.key is not None and (self.key, self.field) in _COMPILED:
            return _COMPILED[self.key, self.field]
        rows = self.rows if isinstance(self.rows, QuerySet) else self.rows()
        # ORDER BY ... LIMIT 1 over the non-null values: MIN's answer, read off an index.
        first = (rows.filter(**{f"{self.field}__isnull": False}).order_by(self.field)
                 .values_list(self.field)[:1])
        compiler = first.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        converters = compiler.get_converters([column for column, *_ in compiler.select])

        def convert(value):
            if value is None or not converters:
                return value
            return next(iter(compiler.apply_converters([[value]], converters)))[0]

        if self.key is not None:
            if len(_COMPILED) >= COMPILED_MAX:
                _COMPILED.clear()
            _COMPILED[self.key, self.field] = sql, params, convert
        return sql, params, convert


COMPILED_MAX = 1000
_COMPILED: dict = {}  # (key, field) -> Due.compiled()
Candidate = Due | datetime | None


def dues_first(kinds: dict[str, list[Candidate]]) -> dict[str, datetime | None]:
    """The earliest moment of each kind's candidates (None: nothing due), in one query."""
    queries = [due for candidates in kinds.values() for due in candidates
               if isinstance(due, Due)]
    values = iter(_fetch(queries))
    found = {}
    for name, candidates in kinds.items():
        moments = []
        for due in candidates:
            if isinstance(due, Due):
                value = next(values)
                if value is not None:
                    moments.append(value + due.after)
            elif due is not None:
                moments.append(due)
        found[name] = min(moments) if moments else None
    return found


def due_first(candidates: list[Candidate]) -> datetime | None:
    return dues_first({"": candidates})[""]


def _fetch(queries: list[Due]) -> list:
    if not queries:
        return []
    parts, params, converts = [], [], []
    for due in queries:
        sql, query_params, convert = due.compiled()
        parts.append(f"({sql})")
        params.extend(query_params)
        converts.append(convert)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        row = cursor.fetchone()
    return [convert(value) for convert, value in zip(converts, row, strict=True)]
