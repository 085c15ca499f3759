"""Delivering the outbox through Django's email backend (EMAIL_URL).

Workers claim due rows with SELECT ... FOR UPDATE SKIP LOCKED and, in that same short
transaction, mark them `sending` with a lease (next_attempt_at = lease expiry): two
workers never hold the same row. A batch goes through one SMTP connection; each row is
marked sent shortly after the server accepted it (see below).

The crash window is the time between the server's "250 OK" and that mark. We chose
at-least-once: a worker that dies there leaves the row `sending`, and once its lease
expires another worker sends it again, with the same Message-ID (derived from the
unique key), which mail systems use to recognise a duplicate. The other choice (mark
sent before sending) loses the email instead, and a lost failed-payment notice or
receipt costs more than a rare duplicate of one. Marks are written MARK_EVERY emails at
a time (one commit per email capped throughput at a few dozen per second on a busy
database), so the window is at most that many emails wide; a worker never sends past
its lease, so a slow batch is not sent twice by two live workers.
"""

import hashlib
import logging
import smtplib
import time
from datetime import datetime, timedelta
from email.utils import parseaddr

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import EmailMultiAlternatives, get_connection
from django.core.validators import validate_email
from django.db import connection, transaction
from django.db.models import F
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.clock_due import floored, in_one_transaction
from customers.singletons import held_read
from invoices.bulkwrite import rows_update
from invoices.events import event_build, events_save
from invoices.models import Invoice

from .context import branding, context_build, context_prefetch
from .documents import AttachmentError, attachment_load, attachments_attached
from .kinds import REMINDER_KINDS
from .models import CustomerNotificationPreference, EmailTemplate, NotificationSettings
from .models import OutboxMessage as Row
from .reminders import invoices_with_payment_processing
from .rendering import Rendered, TemplateError, email_render

log = logging.getLogger(__name__)
ST = Row.Status
OUTBOX = Actor.system("outbox")
LEASE = timedelta(minutes=10)
LEASE_MARGIN_SECONDS = 60  # stop sending this long before the lease expires
MAX_ATTEMPTS = 10
MARK_EVERY = 25  # sent emails marked per transaction: the widest crash window
SENT_FIELDS = ["status", "sent_at", "message_id", "subject", "to", "send_count", "last_error",
               "next_attempt_at"]
BATCH_SIZE = 100
# Only while the invoice is still open does a dunning email make sense.
NEEDS_OPEN_INVOICE = {*REMINDER_KINDS, "payment_failed", "payment_failed_hard",
                      "payment_action_required", "overdue_alert"}


class Undeliverable(Exception):
    """Retrying will not help (no address, invalid address, broken template): the row
    fails at once, with this message, until staff fix the cause and re-send it."""


def backoff(attempts: int) -> timedelta:
    """1, 2, 4 ... minutes, at most 6 hours apart: ten attempts span about 20 hours."""
    return timedelta(minutes=min(2 ** max(attempts - 1, 0), 360))


def message_id(row: Row, domain: str) -> str:
    """Stable for a row across retries; a staff re-send of a sent email gets a new one."""
    seed = row.key if not row.send_count else f"{row.key}#{row.send_count}"
    return f"<{hashlib.sha256(seed.encode()).hexdigest()[:40]}@{domain}>"


# --- claiming -----------------------------------------------------------------------


def due_rows(now: datetime, test_clock=None):
    rows = Row.objects.filter(status__in=[ST.PENDING, ST.SENDING], next_attempt_at__lte=now)
    if test_clock is not None:
        rows = floored(rows.filter(test_clock=test_clock), "next_attempt_at", test_clock)
    return rows


def outbox_claim(*, now: datetime, size: int, test_clock=None) -> list[Row]:
    """Take up to `size` due rows for this worker (leased until now + LEASE)."""
    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
    with transaction.atomic(savepoint=False):
        claim = (
            due_rows(now, test_clock)
            .order_by("next_attempt_at", "pk")
            .select_for_update(skip_locked=True, of=("self",))
            .values_list("pk", flat=True)[:size]
        )
        if connection.vendor == "postgresql":
            ids = _claim_leased(claim, now)
        else:
            ids = list(claim)
            if ids:
                Row.objects.filter(pk__in=ids).update(
                    status=ST.SENDING, next_attempt_at=now + LEASE, attempts=F("attempts") + 1
                )
        if not ids:
            return []
    rows = Row.objects.filter(pk__in=ids).select_related("customer", "invoice__customer")
    return sorted(rows, key=lambda row: row.pk)


def _claim_leased(claim, now: datetime) -> list[int]:
    """The rows of `claim` (a locking read of ids) leased, in one statement: UPDATE ...
    WHERE id IN (the claim) RETURNING id (a round trip fewer at each drain)."""
    sql, params = claim.query.sql_with_params()
    quote = connection.ops.quote_name
    table, pk = quote(Row._meta.db_table), quote(Row._meta.pk.column)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET {quote('status')} = %s, {quote('next_attempt_at')} = %s, "
            f"{quote('attempts')} = {quote('attempts')} + 1 WHERE {pk} IN ({sql}) RETURNING {pk}",
            [ST.SENDING.value, now + LEASE, *params],
        )
        return [row[0] for row in cursor.fetchall()]


# --- marking ------------------------------------------------------------------------


def _event(row: Row, type: str, now: datetime, data: dict):
    invoice = row.invoice if row.invoice_id else None
    return event_build(
        type, now=now, actor=OUTBOX, invoice=invoice, customer=row.customer,
        data={"email": row.kind, "key": row.key, **data},
    )


def commit_without_waiting_for_disk() -> None:
    """PostgreSQL: this transaction's commit does not wait for its WAL to reach disk.
    A server crash right after could lose the "sent" mark, and the email would go out
    again with the same Message-ID: the at-least-once outcome already chosen for the
    crash window, at a fraction of the cost per email."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")


def marks_flush(sent: list[tuple[Row, list[str], str]], *, now: datetime) -> None:
    """Mark the emails the server accepted as sent, with their events, in one
    transaction (one per MARK_EVERY emails rather than one per email)."""
    if not sent:
        return
    rows = []
    for row, recipients, mid in sent:
        row.status, row.sent_at, row.message_id, row.to = ST.SENT, now, mid, recipients
        row.send_count, row.last_error, row.next_attempt_at = row.send_count + 1, "", now
        rows.append(row)
    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
    # Within one transaction (clock_due.one_transaction) the commit is not this one's:
    # the caller's transaction commits as it chose (a round trip at each clock stop fewer).
    nested = in_one_transaction()
    with transaction.atomic(savepoint=False):
        if not nested:
            commit_without_waiting_for_disk()
        rows_update(Row, rows, SENT_FIELDS)
        events_save([
            _event(row, "email.sent", now, {"to": row.to, "message_id": row.message_id})
            for row in rows
        ])
    sent.clear()


def mark_failed(row: Row, *, now: datetime, error: str) -> None:
    with transaction.atomic():
        Row.objects.filter(pk=row.pk).update(
            status=ST.FAILED, last_error=error, subject=row.subject, next_attempt_at=now
        )
        events_save([_event(row, "email.failed", now, {"error": error})])


def mark_retry(row: Row, *, now: datetime, error: str) -> str:
    """Back to pending with backoff, or failed once the attempts are used up."""
    if row.attempts >= MAX_ATTEMPTS:
        mark_failed(row, now=now, error=error)
        return "failed"
    Row.objects.filter(pk=row.pk).update(
        status=ST.PENDING, last_error=error, next_attempt_at=now + backoff(row.attempts)
    )
    return "retrying"


def mark_cancelled(row: Row, *, now: datetime, reason: str) -> None:
    Row.objects.filter(pk=row.pk).update(
        status=ST.CANCELLED, last_error=reason, next_attempt_at=now
    )


def release(row: Row, *, now: datetime) -> None:
    """Give a claimed row back untouched (its attempt did not happen)."""
    Row.objects.filter(pk=row.pk).update(
        status=ST.PENDING, next_attempt_at=now, attempts=F("attempts") - 1
    )


# --- building -----------------------------------------------------------------------


def recipients_of(row: Row) -> list[str]:
    if row.to:
        recipients = list(row.to)
    elif row.customer is not None and row.customer.email:
        recipients = [row.customer.email]
    else:
        raise Undeliverable(
            _("The customer has no email address: add one on the customer page, then "
              "re-send this email.")
        )
    for address in recipients:
        try:
            validate_email(address)
        except ValidationError:
            raise Undeliverable(
                _("%(address)s is not a valid email address: correct it, then re-send.")
                % {"address": address}
            ) from None
    return recipients


def reader_locale(row: Row, notification_settings: NotificationSettings) -> str:
    if row.locale:
        return row.locale
    if row.customer is not None:
        return row.customer.preferred_locale
    return notification_settings.staff_locale


def row_render(row: Row, *, notification_settings, overrides=None, brand=None) -> Rendered:
    """The row's subject and bodies as they would go out now (also the admin preview)."""
    locale = reader_locale(row, notification_settings)
    try:
        return email_render(row.kind, locale, context_build(row, locale, brand), overrides)
    except TemplateError as error:
        raise Undeliverable(str(error)) from None


def message_build(
    row: Row, *, notification_settings, overrides, brand: dict
) -> EmailMultiAlternatives:
    recipients = recipients_of(row)
    rendered = row_render(
        row, notification_settings=notification_settings, overrides=overrides, brand=brand
    )
    omitted = row.attachments if not attachments_attached() else []
    try:
        attachments = [] if omitted else [attachment_load(spec) for spec in row.attachments]
    except TemplateError as error:
        raise Undeliverable(str(error)) from None
    row.subject = rendered.subject[:300]
    sender = notification_settings.from_email or settings.DEFAULT_FROM_EMAIL
    domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
    message = EmailMultiAlternatives(
        rendered.subject, rendered.text, from_email=sender, to=recipients,
        reply_to=[brand["support_email"]],
        headers={"Message-ID": message_id(row, domain)},
    )
    if omitted:
        message.extra_headers["X-Omitted-Attachments"] = ", ".join(
            f"{spec.get('kind')} {spec.get('id')}" for spec in omitted
        )
    message.attach_alternative(rendered.html, "text/html")
    for filename, content in attachments:
        message.attach(filename, content, "application/pdf")
    return message


# --- still wanted? ------------------------------------------------------------------


def cancel_reasons(rows: list[Row]) -> dict[int, str]:
    """Rows that must not go out any more, with why (shown on the row)."""
    reasons = {}
    reminders = [row for row in rows if row.kind in REMINDER_KINDS and row.invoice_id]
    paused = set(
        CustomerNotificationPreference.objects.filter(
            customer_id__in={row.customer_id for row in reminders}, reminders_paused=True
        ).values_list("customer_id", flat=True)
    ) if reminders else set()
    processing = invoices_with_payment_processing([row.invoice_id for row in reminders])
    for row in rows:
        invoice = row.invoice
        if row.kind in NEEDS_OPEN_INVOICE and invoice is not None \
                and invoice.status != Invoice.Status.OPEN:
            reasons[row.pk] = _("The invoice is %(status)s: this email is no longer needed.") % {
                "status": invoice.get_status_display().lower()
            }
        elif row.kind in REMINDER_KINDS and row.customer_id in paused:
            reasons[row.pk] = _("Reminders are paused for this customer.")
        elif row.kind in REMINDER_KINDS and row.invoice_id in processing:
            reasons[row.pk] = _("A payment of this invoice is processing.")
    return reasons


# --- delivering ---------------------------------------------------------------------


def batch_deliver(rows: list[Row], *, now: datetime, counts: dict) -> int:
    """Deliver claimed rows; returns how many were given back unsent (send_all)."""
    notification_settings = NotificationSettings.load()
    overrides = held_read("notifications.email_templates", lambda: {
        (t.kind, t.locale): t for t in EmailTemplate.objects.all()}, watch={EmailTemplate})
    brand = branding()
    cancelled = cancel_reasons(rows)
    context_prefetch([row for row in rows if row.pk not in cancelled])
    ready = []
    for row in rows:
        if row.pk in cancelled:
            mark_cancelled(row, now=now, reason=cancelled[row.pk])
            counts["cancelled"] += 1
            continue
        try:
            message = message_build(
                row, notification_settings=notification_settings, overrides=overrides,
                brand=brand,
            )
        except Undeliverable as error:
            mark_failed(row, now=now, error=str(error))
            counts["failed"] += 1
        except AttachmentError as error:
            counts[mark_retry(row, now=now, error=str(error))] += 1
        else:
            ready.append((row, message))
    return send_all(ready, now=now, counts=counts) if ready else 0


def send_all(ready: list, *, now: datetime, counts: dict) -> int:
    """Send through one connection; a connection lost midway is reopened once. Returns
    how many rows were given back unsent, due again at once (the lease ran short)."""
    deadline = time.monotonic() + LEASE.total_seconds() - LEASE_MARGIN_SECONDS
    connection = get_connection(fail_silently=False)
    opened = _open(connection)
    sent = []  # accepted by the server, not yet marked
    released = 0
    try:
        for row, message in ready:
            if opened is not True or time.monotonic() > deadline:
                if opened is not True:
                    error = _("The mail server cannot be reached: %(e)s") % {"e": opened}
                    counts[mark_retry(row, now=now, error=error)] += 1
                else:
                    release(row, now=now)
                    released += 1
                continue
            message.connection = connection
            outcome = send_one(row, message, now=now)
            counts[outcome] += 1
            if outcome == "sent":
                sent.append((row, message.to, message.extra_headers["Message-ID"]))
                if len(sent) >= MARK_EVERY:
                    marks_flush(sent, now=now)
            elif outcome == "retrying":
                connection.close()
                opened = _open(connection)
    finally:
        marks_flush(sent, now=now)
        connection.close()
    return released


def _open(connection) -> bool | str:
    try:
        connection.open()
    except (OSError, smtplib.SMTPException) as error:
        log.warning("outbox: mail server unreachable: %s", error)
        return str(error) or error.__class__.__name__
    return True


def send_one(row: Row, message: EmailMultiAlternatives, *, now: datetime) -> str:
    """Hand one email to the server; the caller marks it sent (marks_flush)."""
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as error:
        refused = ", ".join(error.recipients)
        mark_failed(row, now=now, error=_("The mail server refused %(to)s.") % {"to": refused})
        return "failed"
    except (OSError, smtplib.SMTPException) as error:
        text = _("Sending failed: %(e)s") % {"e": str(error) or error.__class__.__name__}
        return mark_retry(row, now=now, error=text)
    return "sent"


def outbox_drain(
    *, now: datetime, limit: int | None = None, batch_size: int = BATCH_SIZE, test_clock=None
) -> dict:
    """Deliver what is due at `now`, batch by batch, until nothing is left (or `limit`
    rows were handled). Returns counts: sent, retrying, failed, cancelled."""
    counts = {"sent": 0, "retrying": 0, "failed": 0, "cancelled": 0}
    handled = 0
    while limit is None or handled < limit:
        size = batch_size if limit is None else min(batch_size, limit - handled)
        rows = outbox_claim(now=now, size=size, test_clock=test_clock)
        if not rows:
            break
        released = batch_deliver(rows, now=now, counts=counts)
        handled += len(rows)
        if len(rows) < size and not released:
            break  # nothing else is due (what others hold is theirs): no empty claim
    return counts


def outbox_requeue(rows, *, now: datetime) -> int:
    """Staff's "re-send": failed, cancelled or sent rows go out again as soon as possible
    (a sent one with a new Message-ID, since it is a new message to its reader)."""
    statuses = [ST.FAILED, ST.CANCELLED, ST.SENT]
    return Row.objects.filter(pk__in=[row.pk for row in rows], status__in=statuses).update(
        status=ST.PENDING, attempts=0, next_attempt_at=now, last_error=""
    )
