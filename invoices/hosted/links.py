"""Invoice page links: finding the invoice behind a token, how long a link is valid, and
the doors that rotate, revoke and re-send one. Each door writes its event.

A link is valid until `hosted_link_days_after_due` days after the due date (after
it was issued when the invoice has no due date, or when it was issued after that), and
never longer than `hosted_link_max_days` after it was issued. Issued means finalized,
or rotated later (staff, or a customer asking for a fresh link).
"""

import re
import weakref
import zoneinfo
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from functools import cache, cached_property

from django.db import connection, transaction
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from customers.models import Customer, PaymentMethod

from ..events import event_record
from ..models import Branding, Invoice, InvoicingSettings, Payment, PaymentAttempt
from ..services import invoice_lock
from ..transitions import S
from . import token_fields, token_hash
from .kept import Kept
from .page import Shown, page_shown, shown_from_rows, shown_sql
from .rows import model_columns

# What token_from_salt makes: 32 bytes of HMAC in unpadded URL-safe base64.
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# The current link's fields: a rotation rewrites them, a revocation clears them.
LINK_FIELDS = ("hosted_token_salt", "hosted_token_hash", "hosted_token_issued_at")


@dataclass(frozen=True)
class LinkRead:
    """What every request on a link reads first, in one query.

    The visits of one state of the page get the same LinkRead, kept in the process
    (`link_states`): whatever reads it leaves it, and its instances, unchanged."""

    invoice: Invoice  # with its customer, the customer's default payment method and its own
    settings: InvoicingSettings  # how long links live
    branding: Branding
    shown: Shown | None = None  # payments and attempts, when asked for
    values: tuple = ()  # the row as read: every value the instances above were made from
    # The versions of every row read (PostgreSQL, a visit of the page): equal versions,
    # equal rows (`link_read`). Empty when unknown.
    state: str = ""

    @cached_property
    def expires_at(self) -> datetime | None:
        """When the link stops working (`link_expires_at`), worked out once per read."""
        return link_expires_at(self.invoice, self.settings)


def link_read(token: str, *, with_shown: bool = False) -> LinkRead | None:
    """The finalized invoice whose live link is `token`, or None for anything else
    (unknown, tampered, truncated, revoked), with what the page needs of single rows.
    The lookup is by the token's hash, so nothing compares the secret itself byte by
    byte. Read in plain SQL, one query on every request on a link (rows.py); the
    customer's test clock only when it has one (rare).

    `with_shown` (a visit of the page) also reads the invoice's payments and latest
    attempts. On PostgreSQL a visit reads only the versions of all those rows
    (`_state_sql`), in one small query, and gets what was read for those versions in
    this process (`link_states`); only versions not seen yet read the rows themselves
    (three statements sent at once). Elsewhere: the link's row, then two more queries."""
    if not TOKEN_RE.match(token):
        return None
    hashed = token_hash(token)
    if with_shown and _statements_batched():
        return _page_read(hashed)
    with connection.cursor() as cursor:
        cursor.execute(_link_sql(), [hashed, S.DRAFT])
        row = cursor.fetchone()
    if row is None:
        return None
    read = _link_of(row)
    if read is None:  # no settings or branding row yet (a new deployment)
        InvoicingSettings.load(), Branding.load()  # create the rows with their defaults
        return link_read(token, with_shown=with_shown)  # read again: found this time
    return replace(read, shown=page_shown(read.invoice)) if with_shown else read


def _page_read(hashed: str) -> LinkRead | None:
    """A visit's read on PostgreSQL: the versions, then what this process knows of them.

    Each state is read and its instances built once per process. A customer on a test
    clock gets instances of its own on every visit: reading its clock keeps the clock on
    the customer's instance, and the clock moves without a new version of those rows."""
    with connection.cursor() as cursor:
        _statements_prepare(cursor)
        cursor.execute(_EXECUTE_STATE, [hashed, S.DRAFT])
        found = cursor.fetchone()
        if found is None:
            return None
        kept = link_states.get(found[0])
        if isinstance(kept, LinkRead):
            return kept
        if kept is None:
            kept = _rows_read(cursor, hashed)
            if kept is None:  # gone since its versions were read
                return None
    read = _link_of(kept.row, shown=shown_from_rows(kept.paid, kept.tried), state=kept.state)
    if read is None:  # no settings or branding row yet (a new deployment)
        InvoicingSettings.load(), Branding.load()
        return _page_read(hashed)
    link_states.put(kept.state, read if read.invoice.customer.test_clock_id is None else kept)
    return read


def _link_of(row: tuple, shown: Shown | None = None, state: str = "") -> LinkRead | None:
    """The link's row as instances; None while the settings or branding row is missing."""
    invoice, customer, method, own_method, settings, branding = _instances(row)
    if settings is None or branding is None:
        return None
    invoice.customer = customer
    if method is not None:
        customer.default_payment_method = method
    if own_method is not None:
        invoice.default_payment_method = own_method
    return LinkRead(
        invoice=invoice, settings=settings, branding=branding, shown=shown, values=row,
        state=state,
    )


def invoice_for_token(token: str) -> Invoice | None:
    read = link_read(token)
    return read.invoice if read is not None else None


_LINK_ROWS = (
    (Invoice, "i"), (Customer, "c"), (PaymentMethod, "m"), (PaymentMethod, "om"),
    (InvoicingSettings, "s"), (Branding, "b"),
)


@cache
def _link_sql(*, versioned: bool = False) -> str:
    """The link's row; `versioned`: with the versions of its rows last (PostgreSQL)."""
    selected = [model_columns(model, alias).select for model, alias in _LINK_ROWS]
    if versioned:
        selected.append(_link_version())
    return f"SELECT {', '.join(selected)} {_link_from()}"


@cache
def _link_from() -> str:
    i, c, m, om, s, b = (model_columns(model, alias) for model, alias in _LINK_ROWS)
    return (
        f"FROM {i.table} JOIN {c.table} ON c.id = i.customer_id "
        f"LEFT JOIN {m.table} ON m.id = c.default_payment_method_id "
        f"LEFT JOIN {om.table} ON om.id = i.default_payment_method_id "
        f"LEFT JOIN {s.table} ON s.id = 1 LEFT JOIN {b.table} ON b.id = 1 "  # load()'s rows
        "WHERE i.hosted_token_hash = %s AND i.status <> %s LIMIT 1"
    )


def _statements_batched() -> bool:
    """Whether the page's reads go as prepared statements sent together: PostgreSQL with
    psycopg's client-side binding (Django's default), which lets one execute() carry
    several statements, and no transaction-mode connection pooler in between (Django's
    documented sign of one, DISABLE_SERVER_SIDE_CURSORS: such a pooler would send an
    EXECUTE to a server connection that never saw its PREPARE)."""
    config = connection.settings_dict
    return (
        connection.vendor == "postgresql"
        and not config.get("OPTIONS", {}).get("server_side_binding")
        and not config.get("DISABLE_SERVER_SIDE_CURSORS")
    )


# --- the versions of the page's rows (PostgreSQL) ---------------------------------------
#
# A row's version is its id, the id of the transaction that wrote it (xmin) and where it
# lies (ctid). Every UPDATE writes a new version of the row in a new place, and a place
# is not reused while the transaction that wrote the version there is still running (so
# a transaction that changes a row twice, as a test does, still makes a new version
# each time; tests/hosted/test_kept_pages.py). Equal versions are equal rows (for
# transaction ids to repeat, about four billion transactions must pass, and the same row
# be rewritten at the same place by exactly that one). A visit of the page reads the
# versions alone, and the rows only for versions this process has not seen (measured
# through Django's WSGI handler, 8 x 1,500 visits, load 6: 1.06 against 1.21 ms of the
# web process's CPU a visit, 0.21 against 0.29 ms of PostgreSQL's).


def _version(alias: str) -> str:
    return f"{alias}.id, ' ', {alias}.xmin, ' ', {alias}.ctid"


def _link_version() -> str:
    """One text naming the versions of the link's rows (concat() leaves a missing row
    empty, between its separators)."""
    return "concat(" + ", ' ', ".join(_version(alias) for _model, alias in _LINK_ROWS) + ")"


def _shown_versions(invoice_id: str) -> tuple[str, str]:
    """The queries of the versions of the payments and of the latest attempts, in the
    order of the page's own queries."""
    return (
        shown_sql(f"p.invoice_id = {invoice_id}", select=f"concat({_version('p')})"),
        shown_sql(
            f"a.invoice_id = {invoice_id}", attempts=True, select=f"concat({_version('a')})"
        ),
    )


def _state_sql() -> str:
    """The versions of every row the page shows, as one text: the link's, "|", the
    payments', "|", the latest attempts' (each list joined by ",", as `_rows_read` joins
    those it reads)."""
    paid, tried = _shown_versions("i.id")
    return (
        f"SELECT concat({_link_version()}, '|', array_to_string(ARRAY({paid}), ','), '|', "
        f"array_to_string(ARRAY({tried}), ',')) {_link_from()}"
    )


@dataclass(frozen=True)
class KeptRows:
    """The rows of one state of an invoice's page, as read (values before conversion)."""

    state: str
    row: tuple
    paid: tuple
    tried: tuple


def _rows_read(cursor, hashed: str) -> KeptRows | None:
    """The link's row, the payments and the latest attempts, each with its version, in
    one round trip: the state is made of the versions of the rows actually read."""
    cursor.execute(_EXECUTE_ROWS, [hashed, S.DRAFT] * 3)
    row = cursor.fetchone()
    cursor.nextset()
    paid = cursor.fetchall()
    cursor.nextset()
    tried = cursor.fetchall()
    if row is None:  # gone since its versions were read
        return None
    state = "|".join([
        row[-1], ",".join(values[-1] for values in paid), ",".join(values[-1] for values in tried)
    ])
    return KeptRows(
        state=state, row=tuple(row[:-1]), paid=tuple(tuple(values[:-1]) for values in paid),
        tried=tuple(tuple(values[:-1]) for values in tried),
    )


# What was read of the page states last visited, by state: the LinkRead of the state, or
# its rows when its instances are not to be shared.
link_states = Kept(512)


# The page's reads as prepared statements, created once per database connection: the
# versions (every visit), then the link's row, payments and latest attempts (executed
# together, for versions not seen yet). Planning them was most of their cost on
# PostgreSQL (measured: the link's row 0.16 ms of the server's CPU prepared against 0.7
# ms planned each time, the invoice table having 17 indexes to consider).
_STATEMENTS = ("hosted_page_state", "hosted_page_link", "hosted_page_paid", "hosted_page_tried")
_EXECUTE_STATE = f"EXECUTE {_STATEMENTS[0]}(%s, %s)"
_EXECUTE_ROWS = "; ".join(f"EXECUTE {name}(%s, %s)" for name in _STATEMENTS[1:])
_prepared_on = weakref.WeakSet()  # the database connections (psycopg's) that have them


def _statements_prepare(cursor) -> None:
    """Prepare the statements on this connection unless it has them (a new connection
    after CONN_MAX_AGE or a failed health check has none). Prepared statements outlive
    a rolled-back transaction, so knowing the connection is enough."""
    raw = connection.connection
    if raw in _prepared_on:
        return
    invoice_id = (
        f"(SELECT id FROM {Invoice._meta.db_table} "
        "WHERE hosted_token_hash = $1 AND status <> $2 LIMIT 1)"
    )
    paid_columns, tried_columns = model_columns(Payment, "p"), model_columns(PaymentAttempt, "a")
    statements = (
        _state_sql(),
        _link_sql(versioned=True),
        shown_sql(f"p.invoice_id = {invoice_id}",
                  select=f"{paid_columns.select}, concat({_version('p')})"),
        shown_sql(f"a.invoice_id = {invoice_id}", attempts=True,
                  select=f"{tried_columns.select}, concat({_version('a')})"),
    )
    cursor.execute("; ".join(
        f"PREPARE {name} AS {sql.replace('%s', '$1', 1).replace('%s', '$2', 1)}"
        for name, sql in zip(_STATEMENTS, statements, strict=True)
    ))
    _prepared_on.add(raw)


def _instances(row) -> list:
    """One instance per model of the row, None for a model whose outer join found
    nothing (its primary key, first of its columns, is NULL)."""
    instances, start = [], 0
    for model, alias in _LINK_ROWS:
        columns = model_columns(model, alias)
        values = row[start : start + len(columns.attnames)]
        start += len(columns.attnames)
        instances.append(columns.instance(values) if values[0] is not None else None)
    return instances


def link_expires_at(invoice: Invoice, settings: InvoicingSettings) -> datetime | None:
    """When the invoice's current link stops working; None when it has none."""
    if not invoice.hosted_token_hash or invoice.finalized_at is None:
        return None
    issued = invoice.hosted_token_issued_at or invoice.finalized_at
    after = timedelta(days=settings.hosted_link_days_after_due)
    valid_until = issued + after
    if invoice.due_date is not None:
        valid_until = max(valid_until, due_date_end(invoice) + after)
    return min(valid_until, issued + timedelta(days=settings.hosted_link_max_days))


def due_date_end(invoice: Invoice) -> datetime:
    """The end of the due date where the customer lives."""
    tz = zoneinfo.ZoneInfo(invoice.customer.timezone)
    return datetime.combine(invoice.due_date + timedelta(days=1), time.min, tzinfo=tz)


def link_is_live(invoice: Invoice, settings: InvoicingSettings, now: datetime) -> bool:
    return link_live_until(link_expires_at(invoice, settings), now)


def link_live_until(expires_at: datetime | None, now: datetime) -> bool:
    """Whether a link that expires at `expires_at` (None: it has none) is live at `now`."""
    return expires_at is not None and now < expires_at


def hosted_link_rotate(
    invoice: Invoice, *, now: datetime, actor: Actor, reason: str = "rotated"
) -> Invoice:
    """Issue a new link (valid from `now`); every link sent before stops working."""
    with transaction.atomic():
        locked = invoice_lock(invoice)
        if locked.status == S.DRAFT:
            raise DomainError(_("A draft has no invoice page; finalize it first."))
        fields = {**token_fields(), "hosted_token_issued_at": now}
        _link_write(locked, fields)
        event_record(
            "invoice.hosted_link_rotated", now=now, actor=actor, invoice=locked,
            data={"reason": reason},
        )
    _link_copy(locked, invoice)
    return invoice


def hosted_link_revoke(invoice: Invoice, *, now: datetime, actor: Actor) -> Invoice:
    """Stop the current link (it then shows the page for unknown links); rotating the
    link later issues a new one."""
    with transaction.atomic():
        locked = invoice_lock(invoice)
        if not locked.hosted_token_hash:
            raise DomainError(_("This invoice has no live page link to revoke."))
        _link_write(locked, {"hosted_token_salt": "", "hosted_token_hash": "",
                             "hosted_token_issued_at": None})
        event_record("invoice.hosted_link_revoked", now=now, actor=actor, invoice=locked)
    _link_copy(locked, invoice)
    return invoice


def _link_write(locked: Invoice, fields: dict) -> None:
    Invoice.objects.filter(pk=locked.pk).update(**fields)
    for name, value in fields.items():
        setattr(locked, name, value)


def _link_copy(source: Invoice, target: Invoice) -> None:
    for name in LINK_FIELDS:
        setattr(target, name, getattr(source, name))


def email_matches(typed: str, known: str) -> bool:
    """Addresses compare without case or surrounding spaces; an empty one never matches."""
    typed, known = typed.strip().casefold(), known.strip().casefold()
    return bool(known) and typed == known
