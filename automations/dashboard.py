"""The morning dashboard, the admin's index: what is due today and overdue per currency,
what collection recovered in the last 7 days, the next retries, the emails that failed,
and the automations waiting (once the automation engine exists). Each figure links to
the filtered list behind it.

Read-only, a handful of indexed queries (bench/changelist.py measures them beside the
changelists). automations is the highest app the admin index may read from; the engine's
model is looked up at run time, never imported, so the dashboard works before and after
it lands.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db.models import Count, Q, Sum
from django.urls import NoReverseMatch, reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from customers.clock import system_now
from customers.money import format_money
from invoices.models import Invoice, PaymentAttempt
from invoices.transitions import S

from .engine.models import AutomationRun
from .notifications.models import OutboxMessage

NEXT_RETRIES = 5
RECOVERED_DAYS = 7
# Counted up to this many: past it the card says "more than".
FAILED_EMAILS_CAP = 1000


@dataclass
class Figure:
    label: str
    value: str
    url: str = ""
    note: str = ""


@dataclass
class Dashboard:
    due_today: list[Figure] = field(default_factory=list)
    overdue: list[Figure] = field(default_factory=list)
    recovered: list[Figure] = field(default_factory=list)
    next_retries: list[Figure] = field(default_factory=list)
    failed_emails: Figure | None = None
    automations_waiting: Figure | None = None


def admin_url(name: str, **query) -> str:
    try:
        url = reverse(f"admin:{name}")
    except NoReverseMatch:
        return ""
    return f"{url}?{urlencode(query)}" if query else url


def per_currency(rows, locale: str, url_for) -> list[Figure]:
    return [
        Figure(
            label=row["currency"],
            value=format_money(row["amount"] or 0, row["currency"], locale),
            url=url_for(row["currency"]),
            note=ngettext("%(n)d invoice", "%(n)d invoices", row["n"]) % {"n": row["n"]},
        )
        for row in sorted(rows, key=lambda r: r["currency"])
    ]


def open_sums(invoices) -> list[dict]:
    return list(
        invoices.order_by().values("currency")
        .annotate(amount=Sum("amount_remaining"), n=Count("*"))
    )


def dashboard_build(*, now: datetime, locale: str) -> Dashboard:
    board = Dashboard()
    today = timezone.localdate(now)
    tomorrow = today + timedelta(days=1)
    open_invoices = Invoice.objects.filter(status=S.OPEN)

    board.due_today = per_currency(
        # Not yet past due (an invoice whose payment failed earlier is counted overdue):
        # read from invoice_past_due_idx alone.
        open_sums(open_invoices.filter(due_date=today, past_due_at__gt=now)), locale,
        lambda c: admin_url(
            "invoices_invoice_changelist", status__exact="open", currency=c,
            due_date__gte=today.isoformat(), due_date__lt=tomorrow.isoformat(),
        ),
    )
    board.overdue = per_currency(
        open_sums(open_invoices.filter(past_due_at__lte=now)), locale,
        lambda c: admin_url("invoices_invoice_changelist", past_due="yes", currency=c),
    )
    since = now - timedelta(days=RECOVERED_DAYS)
    recovered = (
        PaymentAttempt.objects.filter(
            recovered_q(), status=PaymentAttempt.Status.SUCCEEDED, created_at__gte=since
        )
        .order_by().values("currency").annotate(amount=Sum("amount"), n=Count("id"))
    )
    board.recovered = per_currency(
        recovered, locale,
        lambda c: admin_url(
            "invoices_paymentattempt_changelist", status__exact="succeeded", recovered="yes",
            currency=c,
        ),
    )
    board.next_retries = next_retries(now, locale)
    board.failed_emails = failed_emails()
    board.automations_waiting = automations_waiting()
    return board


def recovered_q() -> Q:
    """A successful retry of a declined payment (attempt_recovered_idx)."""
    return ~Q(retry_of_decline_code="")


def next_retries(now: datetime, locale: str) -> list[Figure]:
    invoices = (
        Invoice.objects.filter(status__in=[S.OPEN, S.UNCOLLECTIBLE],
                               next_payment_attempt__isnull=False)
        .order_by("next_payment_attempt")
        .only("number", "currency", "amount_remaining", "next_payment_attempt")
        [:NEXT_RETRIES]
    )
    return [
        Figure(
            label=invoice.number or "",
            value=format_money(invoice.amount_remaining, invoice.currency, locale),
            url=reverse("admin:invoices_invoice_change", args=[invoice.pk]),
            note=timezone.localtime(invoice.next_payment_attempt).strftime("%Y-%m-%d %H:%M"),
        )
        for invoice in invoices
    ]


def failed_emails() -> Figure:
    failed = OutboxMessage.objects.filter(status=OutboxMessage.Status.FAILED)
    count = failed.order_by()[:FAILED_EMAILS_CAP + 1].count()
    value = (_("more than %(n)d") % {"n": FAILED_EMAILS_CAP}) if count > FAILED_EMAILS_CAP \
        else str(count)
    return Figure(
        label=_("Emails that failed"), value=value,
        url=admin_url("automations_outboxmessage_changelist", status__exact="failed"),
    )


def automations_waiting() -> Figure:
    """Runs waiting for their next step (automation_run_due_idx: waiting runs only)."""
    waiting = AutomationRun.objects.filter(status=AutomationRun.Status.WAITING)
    return Figure(
        label=_("Automations waiting"), value=str(waiting.order_by()[:FAILED_EMAILS_CAP].count()),
        url=admin_url("automations_automationrun_changelist", status__exact="waiting"),
    )


def dashboard_callback(request, context: dict) -> dict:
    """settings.UNFOLD["DASHBOARD_CALLBACK"]: the admin index's figures."""
    locale = translation.to_locale(translation.get_language() or "en")
    context["dashboard"] = dashboard_build(now=system_now(), locale=locale)
    return context
