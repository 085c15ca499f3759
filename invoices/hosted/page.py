"""What the invoice page shows, read in a few queries: the invoice with its customer,
the customer's default payment method and the branding (links.link_read), the
invoice's payments and latest attempts (`page_shown`), its lines. Only what the
customer may see: the billing details snapshotted at finalization, never metadata,
notes or staff names."""

import hashlib
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from babel.numbers import format_decimal
from django.core.cache import cache
from django.core.signals import setting_changed
from django.db import connection, transaction
from django.dispatch import receiver
from django.utils.translation import gettext_lazy as _
from django.utils.translation import to_locale

from customers.actors import Actor
from customers.money import format_money

from ..events import event_record
from ..models import Event, Invoice, InvoiceLine, Payment, PaymentAttempt
from ..totals import ShownRow, invoice_summary, summary_shown
from ..transitions import S
from .kept import Kept
from .payments import decline_text
from .ratelimit import client_address
from .rows import model_columns

PAST_DUE = "past_due"
STATUS_LABELS = {
    S.OPEN: _("Open"),
    PAST_DUE: _("Past due"),
    S.PAID: _("Paid"),
    S.VOID: _("Void"),
    S.UNCOLLECTIBLE: _("Uncollectible"),
}
STATUS_TEXTS = {
    S.OPEN: _("This invoice is awaiting payment."),
    PAST_DUE: _("This invoice is past due. Please pay it as soon as possible."),
    S.PAID: _("This invoice is paid. Thank you!"),
    S.VOID: _("This invoice was cancelled (void). Nothing is due."),
    S.UNCOLLECTIBLE: _("This invoice is still unpaid. You can pay it here."),
}
PAYABLE = {S.OPEN, S.UNCOLLECTIBLE}
A = PaymentAttempt.Status
IN_FLIGHT = {A.PENDING, A.PROCESSING}
ATTEMPT_LABELS = {
    A.PENDING: _("Processing"),
    A.PROCESSING: _("Processing"),
    A.SUCCEEDED: _("Paid"),
    A.FAILED: _("Declined"),
    A.REQUIRES_ACTION: _("Needs your bank's approval"),
}
ATTEMPTS_SHOWN = 10


class Money:
    """Formats minor units of one currency in the page's language."""

    def __init__(self, currency: str, language: str):
        self.currency = currency
        self.locale = to_locale(language)

    def __call__(self, amount: int) -> str:
        return money_text(amount, self.currency, self.locale)

    def percentage(self, value: str) -> str:
        return format_decimal(Decimal(value), locale=self.locale)


@lru_cache(maxsize=4096)
def money_text(amount: int, currency: str, locale: str) -> str:
    """format_money, remembered: a page shows the same few amounts to every visitor, and
    Babel's formatting is a measurable part of the page's cost."""
    return format_money(amount, currency, locale)


def page_status(invoice: Invoice, now: datetime) -> str:
    return PAST_DUE if invoice.is_past_due(now) else invoice.status


def is_payable(invoice: Invoice) -> bool:
    return invoice.status in PAYABLE and invoice.amount_remaining > 0


# One page-view event per visitor and link in this window: enough for Smart Retries
# (automations.retries reads whether a customer visited in the last 48 hours) and the
# timeline, without an INSERT on every GET (link scanners open every link again and
# again; the insert was a third of the page's cost).
VIEW_WINDOW_SECONDS = 3600


def visitor_of(request) -> str:
    """Who visits, as far as a page without login can tell: the client's address and
    browser, hashed (nothing personal is kept)."""
    agent = request.META.get("HTTP_USER_AGENT", "")
    return hashlib.sha256(f"{client_address(request)}|{agent}".encode()).hexdigest()[:24]


# The visits this process already knows to be counted (key of visitor, link and window):
# a visitor coming back to the same process in the window costs no cache round trip.
# Only ever a shortcut to the cache's own "already there" answer, so every process still
# counts together through the cache.
seen_views = Kept(10_000)


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    """Another cache (tests override CACHES) has seen none of these visits."""
    seen_views.clear()


def page_view_is_new(token: str, visitor: str, now: datetime) -> bool:
    """Whether this visit of the link counts: the first of the visitor in the window of
    `now` (the customer's clock: fixed windows, so a test clock moves them too). With the
    cache down every visit counts: the signal is never lost."""
    window = int(now.timestamp()) // VIEW_WINDOW_SECONDS
    link = hashlib.sha256(token.encode()).hexdigest()[:24]
    key = f"hosted-view:{link}:{visitor}:{window}"
    if key in seen_views:  # counted already: nothing to ask the cache
        return False
    try:
        new = bool(cache.add(key, 1, timeout=VIEW_WINDOW_SECONDS))
    except Exception:  # noqa: BLE001 - any cache failure: record the visit
        return True
    seen_views.put(key, True)
    return new


def page_view_record(invoice: Invoice, *, now: datetime, actor: Actor, language: str) -> Event:
    """Record a visit of the page: one INSERT, which Smart Retries and the dashboard read.

    On PostgreSQL its commit does not wait for the disk (synchronous_commit off for this
    transaction only): a visit is a signal, not money, so losing the last instant of
    visits in a database crash is acceptable, while a disk flush per visit would be the
    slowest part of the page.
    """
    with transaction.atomic():
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO OFF")
        return event_record(
            "invoice.hosted_page_viewed", now=now, actor=actor, invoice=invoice,
            data={"language": language},
        )


@dataclass(frozen=True)
class Shown:
    """The invoice's payments and latest attempts, as the page shows them."""

    payments: list[Payment]  # oldest first
    attempts: list[PaymentAttempt]  # the latest ATTEMPTS_SHOWN, newest first
    values: tuple = ()  # the rows as read (shown_from_rows)

    def rows(self) -> tuple:
        """Every value of these rows (part of the key of a kept page)."""
        if self.values:
            return self.values
        return tuple(map(row, self.payments)), tuple(map(row, self.attempts))


def page_shown(invoice: Invoice) -> Shown:
    """Read in plain SQL (rows.py): 0.18 ms of CPU against 1.5 ms for the same instances
    through the ORM (measured on PostgreSQL, machine loaded). A visit of the page reads
    them with the link's row instead, in the same round trip (links.link_read)."""
    with connection.cursor() as cursor:
        cursor.execute(shown_sql("p.invoice_id = %s"), [invoice.pk])
        paid = cursor.fetchall()
        cursor.execute(shown_sql("a.invoice_id = %s", attempts=True), [invoice.pk])
        tried = cursor.fetchall()
    return shown_from_rows(paid, tried)


def shown_sql(where: str, *, attempts: bool = False, select: str = "") -> str:
    """The query of the invoice's payments (or latest attempts) that `where` selects;
    `select` replaces the list of columns (by default every column of the model, under
    the alias "p" for payments, "a" for attempts)."""
    if attempts:
        columns = model_columns(PaymentAttempt, "a")
        return (
            f"SELECT {select or columns.select} FROM {columns.table} WHERE {where} "
            f"ORDER BY a.created_at DESC, a.id DESC LIMIT {ATTEMPTS_SHOWN}"
        )
    columns = model_columns(Payment, "p")
    return (
        f"SELECT {select or columns.select} FROM {columns.table} WHERE {where} "
        "ORDER BY p.received_at, p.id"
    )


def shown_from_rows(paid: list, tried: list) -> Shown:
    payments, attempts = model_columns(Payment, "p"), model_columns(PaymentAttempt, "a")
    return Shown(
        payments=[payments.instance(values) for values in paid],
        attempts=[attempts.instance(values) for values in tried],
        values=(tuple(map(tuple, paid)), tuple(map(tuple, tried))),
    )


def row(obj) -> tuple | None:
    """Every column value of a model instance (None for none)."""
    if obj is None:
        return None
    return tuple(getattr(obj, field.attname) for field in obj._meta.concrete_fields)


def page_context(invoice: Invoice, shown: Shown, *, now: datetime, language: str) -> dict:
    money = Money(invoice.currency, language)
    status = page_status(invoice, now)
    attempts = page_attempts(shown.attempts, money)
    totals = totals_rows(invoice, shown, money)
    return {
        "invoice": invoice,
        "status": status,
        "status_label": STATUS_LABELS[status],
        "status_text": STATUS_TEXTS[status],
        "bill_to": invoice.customer_details,
        "timezone": invoice.customer.timezone,
        "lines": page_lines(invoice, money),
        "totals": totals,
        "amount_due": totals[-1].amount,
        "payable": is_payable(invoice),
        "payments": page_payments(shown.payments, money),
        "attempts": attempts,
        "in_flight": any(attempt["status"] in IN_FLIGHT for attempt in attempts),
    }


def page_lines(invoice: Invoice, money: Money) -> list[dict]:
    # Only the columns shown: the ORM's cost grows with them, and this runs on every visit.
    lines = InvoiceLine.objects.filter(invoice_id=invoice.pk).order_by("position", "id")
    return [
        {
            "description": line["description"],
            "period_start": line["period_start"],
            "period_end": line["period_end"],
            "quantity": line["quantity"],
            "unit_amount": money(line["unit_amount"]),
            "amount": money(line["amount"]),
        }
        for line in lines.values(
            "description", "period_start", "period_end", "quantity", "unit_amount", "amount"
        )
    ]


def totals_rows(invoice: Invoice, shown: Shown, money: Money) -> list[ShownRow]:
    """Subtotal to Amount due, as invoices.totals computes them for every reader."""
    received = sum(payment.amount for payment in shown.payments)
    return summary_shown(
        invoice_summary(invoice, received=received), money=money, percent=money.percentage
    )


def page_payments(payments: list[Payment], money: Money) -> list[dict]:
    methods = dict(Payment.Method.choices)
    return [
        {
            "id": payment.pk,
            "received_at": payment.received_at,
            "method": methods.get(payment.method, payment.method),
            "amount": money(payment.amount),
        }
        for payment in payments
    ]


def page_attempts(attempts: list[PaymentAttempt], money: Money) -> list[dict]:
    """The latest payment attempts, automatic ones included, newest first."""
    return [
        {
            "id": attempt.pk,
            "created_at": attempt.created_at,
            "method": attempt.method_label,
            "amount": money(attempt.amount),
            "status": attempt.status,
            "status_label": ATTEMPT_LABELS[attempt.status],
            "message": decline_text(attempt.failure_message)
            if attempt.status == A.FAILED else "",
            "action_url": attempt.action_url,
            "payment_id": attempt.payment_id,
        }
        for attempt in attempts
    ]
