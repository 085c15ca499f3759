"""What each email says, built when it is delivered (so a re-send shows today's link and
amounts) from the ids its outbox row keeps, in the reader's language."""

import zoneinfo
from datetime import datetime
from functools import cache

from babel.dates import format_date
from django.conf import settings
from django.db.models import Sum
from django.urls import reverse
from django.utils import translation
from django.utils.translation import gettext as _

from customers.money import babel_locale, format_money
from invoices.hosted import hosted_url
from invoices.hosted.links import link_expires_at
from invoices.models import Branding, CreditNote, Invoice, InvoicingSettings, Payment
from invoices.totals import invoice_summary, summary_settlement, summary_shown

from .kinds import KINDS, SUBSCRIPTION_KINDS
from .reasons import decline_reason
from .rendering import TemplateError


class MissingData(TemplateError):
    """What the email is about no longer exists (deleted, or never did)."""


def branding() -> dict:
    """The sender as the customer knows it (invoices.Branding), in every email."""
    brand = Branding.load()
    return {
        "company_name": brand.company_name or "Billing",
        "support_email": brand.support_email or settings.DEFAULT_FROM_EMAIL,
        "accent_colour": brand.accent_colour,
    }


def long_date(value, locale: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if isinstance(value, datetime):
        value = value.date()
    return format_date(value, format="long", locale=babel_locale(locale))


def money(amount: int, currency: str, locale: str) -> str:
    return format_money(amount, currency, locale)


def invoice_context(invoice: Invoice | None, locale: str, wanted) -> dict:
    """The invoice's values among `wanted` (formatting money and dates costs: an email
    formats only what its templates may show)."""
    if invoice is None:
        raise MissingData(_("The invoice of this email no longer exists."))
    details = invoice.customer_details or {}
    due = cache(lambda: invoice_summary(invoice)[-1].amount)
    values = {
        "customer_name": lambda: details.get("name") or invoice.customer.name,
        "invoice_number": lambda: invoice.number or "",
        "hosted_url": lambda: hosted_url(invoice),
        # The amount due as the invoice page and the PDF state it (invoices.totals).
        "amount_remaining": lambda: money(due(), invoice.currency, locale),
        "amount_due": lambda: money(due(), invoice.currency, locale),
        "total": lambda: money(invoice.total, invoice.currency, locale),
        "due_date": lambda: long_date(invoice.due_date, locale),
        # Paid before the email went out (charged at once, or paid from the page): the
        # email says so instead of "due" with an amount due of zero.
        "paid": lambda: invoice.status == Invoice.Status.PAID,
        "totals": lambda: totals_rows(
            invoice_summary(invoice, received=payments_received(invoice)), invoice.currency, locale
        ),
    }
    return {name: value() for name, value in values.items() if name in wanted}


def payments_received(invoice: Invoice) -> int:
    known = getattr(invoice, "_payments_received", None)  # context_prefetch
    if known is not None:
        return known
    return invoice.payments.aggregate(sum=Sum("amount"))["sum"] or 0


def context_prefetch(rows) -> None:
    """What building these rows' contexts reads row by row, in two queries for all of
    them (an outbox batch): the receipts' payments and the sums received on the invoices
    whose totals the emails show. Read when the batch is delivered, as row by row."""
    receipts = [row for row in rows if row.kind == "receipt"]
    if receipts:
        payments = Payment.objects.in_bulk(
            {row.context.get("payment") for row in receipts} - {None})
        for row in receipts:
            row._payments = payments
    invoices = [row.invoice for row in rows if row.invoice_id and row.kind in KINDS
                and row.kind not in SUBSCRIPTION_KINDS and row.kind not in WITHOUT_INVOICE
                and "totals" in KINDS[row.kind].variables]
    if invoices:
        received = dict(
            Payment.objects.filter(invoice_id__in={invoice.pk for invoice in invoices})
            .order_by().values_list("invoice_id").annotate(sum=Sum("amount"))
        )
        for invoice in invoices:
            invoice._payments_received = received.get(invoice.pk) or 0


def totals_rows(summary, currency: str, locale: str) -> list[dict]:
    """Total to Amount due, the rows that add up, in the reader's language."""
    with translation.override(locale.lower()):
        shown = summary_shown(
            summary_settlement(summary),
            money=lambda amount: money(amount, currency, locale),
            percent=str,
        )
        return [{"label": row.label, "amount": row.amount} for row in shown]


def payment_failed_context(row, locale: str) -> dict:
    data = row.context
    invoice = row.invoice
    return {
        "amount": money(data.get("amount") or invoice.amount_remaining, invoice.currency, locale),
        "failure_reason": decline_reason(
            data.get("decline_code", ""), data.get("failure_message", ""), locale
        ),
        "next_attempt_date": long_date(
            local_iso(data.get("next_payment_attempt"), invoice.customer.timezone), locale
        ),
    }


def action_required_context(row, locale: str) -> dict:
    invoice = row.invoice
    amount = row.context.get("amount") or invoice.amount_remaining
    return {
        "amount": money(amount, invoice.currency, locale),
        "action_url": row.context.get("action_url") or hosted_url(invoice),
    }


def receipt_context(row, locale: str) -> dict:
    pk, known = row.context.get("payment"), getattr(row, "_payments", {})  # context_prefetch
    payment = known[pk] if pk in known else Payment.objects.filter(pk=pk).first()
    if payment is None:
        raise MissingData(_("The payment of this receipt no longer exists."))
    return {
        "amount_paid": money(payment.amount, payment.currency, locale),
        "paid_date": long_date(payment.received_at, locale),
        "payment_method": _payment_method_label(payment, locale),
    }


def _payment_method_label(payment: Payment, locale: str) -> str:
    with translation.override(locale.lower()):
        return str(payment.get_method_display())


def credit_note_context(row, locale: str) -> dict:
    note = CreditNote.objects.filter(pk=row.context.get("credit_note")).first()
    if note is None:
        raise MissingData(_("The credit note of this email no longer exists."))
    return {
        "credit_note_number": note.number,
        "credit_note_amount": money(note.amount, note.currency, locale),
    }


def reminder_context(row, locale: str) -> dict:
    offset = row.context.get("offset", 0)
    return {"days_until_due": -offset, "days_overdue": offset}


def invoice_link_context(row, locale: str) -> dict:
    expires = link_expires_at(row.invoice, InvoicingSettings.load())
    tz = row.invoice.customer.timezone
    return {"link_expires_date": long_date(expires and local(expires, tz), locale)}


def local(moment: datetime, tz_name: str) -> datetime:
    return moment.astimezone(zoneinfo.ZoneInfo(tz_name))


def local_iso(text: str | None, tz_name: str) -> datetime | None:
    """An ISO time from an event's data, in the customer's time zone (for its date)."""
    return local(datetime.fromisoformat(text), tz_name) if text else None


def alert_context(row, locale: str) -> dict:
    invoice = row.invoice
    path = reverse("admin:invoices_invoice_change", args=[invoice.pk])
    return {
        "customer_name": invoice.customer.name,
        "days_overdue": row.context.get("days_overdue", 0),
        "admin_url": settings.SITE_URL + path,
    }


def subscription_context(row, locale: str) -> dict:
    """A subscription email's values, kept raw in its row (amounts in minor units, ISO
    times) and formatted here for the reader."""
    data = row.context
    tz = data.get("timezone") or "UTC"
    values = {
        "customer_name": data.get("customer_name", ""),
        "plan": data.get("plan", ""),
        "card": data.get("card", ""),
        "survey_url": data.get("survey_url", ""),
        "amount": money(data["amount"], data["currency"], locale) if "amount" in data else "",
    }
    for name in ("renewal_date", "trial_end_date", "cancellation_date", "resume_date"):
        values[name] = long_date(local_iso(data.get(name), tz), locale)
    return values


def held_context(row, locale: str) -> dict:
    invoice = row.invoice
    return {
        **alert_context(row, locale),
        "amount": money(row.context.get("amount") or invoice.amount_remaining,
                        invoice.currency, locale),
        "reason": row.context.get("reason", ""),
    }


EXTRA = {
    "payment_failed": payment_failed_context,
    "payment_failed_hard": payment_failed_context,
    "payment_action_required": action_required_context,
    "receipt": receipt_context,
    "credit_note": credit_note_context,
    "reminder_upcoming": reminder_context,
    "reminder_overdue": reminder_context,
    "overdue_alert": alert_context,
    "payment_held": held_context,
    "invoice_link": invoice_link_context,
}
# Their context is written whole when they are queued.
WITHOUT_INVOICE = {"digest", "automation_team"}


def context_build(row, locale: str, brand: dict | None = None) -> dict:
    """Everything the row's templates may use, formatted for `locale`. `brand`: pass
    branding() when building many (read once)."""
    context = dict(brand or branding())
    if row.kind in SUBSCRIPTION_KINDS:
        return {**context, **subscription_context(row, locale)}
    if row.kind in WITHOUT_INVOICE:
        return {**context, **row.context}
    context.update(invoice_context(row.invoice, locale, KINDS[row.kind].variables))
    extra = EXTRA.get(row.kind)
    if extra is not None:
        context.update(extra(row, locale))
    return context
