"""When a test clock's work falls due, asked of the database in one statement.

Each kind of work a test clock runs (automations.clocks.CLOCK_WORK) says where its next
moment is as a list of candidates: the earliest non-empty `field` of some rows, shifted
by `after`, or a moment already known. `dues_first` answers every kind at once, one
scalar subquery per candidate in a single SELECT: a simulation asks thousands of times,
and one round trip costs less than a dozen.

A floor (`clock_floor`): a simulation runs in one uncommitted transaction, so every row
version it replaces stays in the indexes these queries read, and a row's older due
moments are in the past: an index walked from its lowest entry passes every one of them
before the first live row (12 ms at day 30 of 500 customers). With a floor known to be
at or before every live row's moment, the queries of the kinds whose work never writes
a moment earlier than its own (Due.floored: drafts, collection, outbox) start the walk
there (`floor` of dues_first, `floored` for the sweeps' own due queries): the same
answers, the dead entries before the floor never read.
"""

from collections.abc import Callable
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import connection
from django.db.models import QuerySet

# Stands for the floor in a compiled subquery: the floor is a parameter of each call.
_FLOOR_MARK = datetime(1111, 11, 11, 11, 11, 11, tzinfo=UTC)


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
    # Read from the floor (dues_first's `floor`) only when the work that writes `field`
    # never sets it before the moment it runs at. Not so for a moment derived from a
    # date the invoice carries (an overdue alert, the past-due policy, a renewal notice):
    # those are read whole.
    floored: bool = False

    def compiled(self, floored: bool = False):
        """(sql, params, convert, at): the subquery, what turns its raw value into the
        field's (SQLite returns datetimes as text), and with `floored` the position in
        params of the floor's parameter (the lowest value of `field` read)."""
        cached = (self.key, self.field, floored)
        if self.key is not None and cached in _COMPILED:
            return _COMPILED[cached]
        rows = self.rows if isinstance(self.rows, QuerySet) else self.rows()
        if floored:
            rows = rows.filter(**{f"{self.field}__gte": _FLOOR_MARK})
        # ORDER BY ... LIMIT 1 over the non-null values: MIN's answer, read off an index.
        first = (rows.filter(**{f"{self.field}__isnull": False}).order_by(self.field)
                 .values_list(self.field)[:1])
        compiler = first.query.get_compiler(connection=connection)
        sql, params = compiler.as_sql()
        at = None
        if floored:
            mark = connection.ops.adapt_datetimefield_value(_FLOOR_MARK)
            [at] = [n for n, param in enumerate(params) if param == mark]
        converters = compiler.get_converters([column for column, *_ in compiler.select])

        def convert(value):
            if value is None or not converters:
                return value
            return next(iter(compiler.apply_converters([[value]], converters)))[0]

        if self.key is not None:
            if len(_COMPILED) >= COMPILED_MAX:
                _COMPILED.clear()
            _COMPILED[cached] = sql, params, convert, at
        return sql, params, convert, at


COMPILED_MAX = 1000
_COMPILED: dict = {}  # (key, field, floored) -> Due.compiled()
Candidate = Due | datetime | None


def dues_first(kinds: dict[str, list[Candidate]], *, floor: datetime | None = None
               ) -> dict[str, datetime | None]:
    """The earliest moment of each kind's candidates (None: nothing due), in one query.

    With `floor`, only moments at or after it are looked for in the `floored` candidates:
    the answers are the same when none has an earlier one (the caller knows it: see
    clock_floor)."""
    queries = [due for candidates in kinds.values() for due in candidates
               if isinstance(due, Due)]
    values = iter(_fetch(queries, floor))
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


def _fetch(queries: list[Due], floor: datetime | None) -> list:
    if not queries:
        return []
    parts, params, converts = [], [], []
    for due in queries:
        sql, query_params, convert, at = due.compiled(
            floored=floor is not None and due.floored)
        if at is not None:
            # The moment is the field plus `after`: the field's floor is that much earlier.
            query_params = list(query_params)
            query_params[at] = connection.ops.adapt_datetimefield_value(floor - due.after)
        parts.append(f"({sql})")
        params.extend(query_params)
        converts.append(convert)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {', '.join(parts)}", params)
        row = cursor.fetchone()
    return [convert(value) for convert, value in zip(converts, row, strict=True)]


# --- the floor of a clock's advance -----------------------------------------------------

_FLOORS: ContextVar[dict | None] = ContextVar("clock_floors", default=None)


@contextmanager
def clock_floor(test_clock, floor: datetime):
    """While a test clock advances (automations.clocks): no row of `test_clock` falls due
    before `floor` (the clock holds it: it raises the floor as it moves, floor_raise).
    The sweeps' due queries for that clock then read from the floor up (`floored`)."""
    floors = dict(_FLOORS.get() or {})
    floors[test_clock.pk] = floor
    token = _FLOORS.set(floors)
    try:
        yield
    finally:
        _FLOORS.reset(token)


def floor_raise(test_clock, floor: datetime) -> None:
    floors = _FLOORS.get()
    if floors is not None and test_clock.pk in floors:
        floors[test_clock.pk] = max(floors[test_clock.pk], floor)


def floor_of(test_clock) -> datetime | None:
    floors = _FLOORS.get()
    if floors is None or test_clock is None:
        return None
    return floors.get(test_clock.pk)


def floored(rows: QuerySet, field: str, test_clock) -> QuerySet:
    """`rows` (a sweep's due rows for `test_clock`, of a `floored` kind) without those
    whose `field` is before the clock's floor: there are none, and their index entries
    (row versions replaced in the run's transaction) need not be read."""
    floor = floor_of(test_clock)
    if floor is None:
        return rows
    return rows.filter(**{f"{field}__gte": floor})


# --- one transaction around the clock's work -------------------------------------------

_ONE_TRANSACTION: ContextVar[bool] = ContextVar("clock_one_transaction", default=False)


@contextmanager
def one_transaction():
    """The caller holds one transaction open around the work inside and nothing else
    writes the rows it works on until it ends (a simulation: its run is one transaction,
    rolled back). The sweeps then take their shorter path, chosen by this flag, never by
    whether a transaction happens to be open: a claim is the read and its locks are held
    until the outcomes are recorded, no savepoint where no caller goes on after an error,
    the commit's durability left to the caller (in_one_transaction)."""
    if not connection.in_atomic_block:
        raise RuntimeError("one_transaction() needs a transaction open around it.")
    token = _ONE_TRANSACTION.set(True)
    try:
        yield
    finally:
        _ONE_TRANSACTION.reset(token)


def in_one_transaction() -> bool:
    """Whether the work runs within one_transaction() (and its transaction is still
    open: a block that ended it takes the path of its own transactions again)."""
    return _ONE_TRANSACTION.get() and connection.in_atomic_block
