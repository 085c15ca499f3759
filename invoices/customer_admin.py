"""The customer page, extended by the invoices app with the customer's invoices and timeline.

customers never imports invoices, so this app replaces the customer admin registration
with a subclass that adds what only invoices knows about.
"""

from dataclasses import dataclass
from datetime import datetime

from django.contrib import admin
from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext_lazy as _

from customers.admin import CustomerAdmin, money
from customers.forms import CustomerForm
from customers.models import BalanceTransaction, Customer, PaymentMethod

from .models import Event, Invoice
from .pagination import CappedCountPaginator

LATEST_INVOICES = 20
TIMELINE_LENGTH = 50

EVENT_TITLES = {
    "invoice.created": _("Invoice created"),
    "invoice.updated": _("Invoice updated"),
    "invoice.finalized": _("Invoice finalized"),
    "invoice.finalization_failed": _("Automatic finalization failed"),
    "invoice.paid": _("Invoice paid"),
    "invoice.payment_succeeded": _("Payment received"),
    "invoice.payment_failed": _("Payment failed"),
    "invoice.payment_action_required": _("Payment needs the customer's action"),
    "invoice.marked_uncollectible": _("Invoice marked uncollectible"),
    "invoice.voided": _("Invoice voided"),
    "invoice.deleted": _("Draft deleted"),
    "invoice.overdue": _("Invoice overdue"),
    "invoice.will_be_due": _("Invoice will be due"),
    "invoice.payment_processing": _("Payment processing"),
    "invoice.collection_paused": _("Collection paused: no payment method"),
    "invoice.hosted_page_viewed": _("Invoice page viewed by the customer"),
    "payment_method.attached": _("Payment method added"),
    "payment_method.detached": _("Payment method detached"),
    "payment_method.disabled": _("Payment method unusable after a hard decline"),
    "payment_method.reenabled": _("Payment method re-enabled"),
    "credit_note.created": _("Credit note created"),
    "credit_note.voided": _("Credit note voided"),
    "email.sent": _("Email sent"),
    "email.failed": _("Email could not be sent"),
}


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    title: str
    detail: str
    actor: str
    link: str = ""
    link_text: str = ""


def admin_url(name: str, *args) -> str:
    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:  # that model has no admin page
        return ""


def invoice_rows(customer_id) -> list[dict]:
    invoices = (
        Invoice.objects.filter(customer_id=customer_id)
        .only("number", "status", "currency", "total", "amount_remaining", "due_date", "created_at")
        .order_by("-created_at", "-id")[:LATEST_INVOICES]
    )
    return [
        {
            "label": str(invoice),
            "status": invoice.get_status_display(),
            "total": money(invoice.total, invoice.currency),
            "remaining": money(invoice.amount_remaining, invoice.currency),
            "due_date": invoice.due_date,
            "url": admin_url("invoices_invoice_change", invoice.pk),
        }
        for invoice in invoices
    ]


def event_entries(customer_id) -> list[TimelineEntry]:
    events = (
        Event.objects.filter(customer_id=customer_id)
        .select_related("invoice", "credit_note")
        .only(
            "type", "created_at", "actor_kind", "actor_label", "data",
            "invoice__number", "credit_note__number",
        )
        .order_by("-created_at", "-id")[:TIMELINE_LENGTH]
    )
    return [
        TimelineEntry(
            at=event.created_at,
            title=str(EVENT_TITLES.get(event.type, event.type)),
            detail=event_detail(event),
            actor=event.actor_label or event.get_actor_kind_display(),
            link=admin_url("invoices_invoice_change", event.invoice_id) if event.invoice_id else "",
            link_text=str(event.invoice) if event.invoice_id else "",
        )
        for event in events
    ]


def event_detail(event: Event) -> str:
    parts = [event.credit_note.number] if event.credit_note_id else []
    data = event.data
    if data.get("error"):
        parts.append(str(data["error"]))
    if data.get("decline_code"):
        parts.append(f"{data['decline_code']}: {data.get('failure_message', '')}")
    if data.get("next_payment_attempt"):
        parts.append(str(_("next attempt %(at)s") % {"at": data["next_payment_attempt"][:16]}))
    if data.get("label"):
        parts.append(str(data["label"]))
    return " · ".join(parts)


def balance_entries(customer_id) -> list[TimelineEntry]:
    lines = BalanceTransaction.objects.filter(customer_id=customer_id).order_by(
        "-created_at", "-id"
    )[:TIMELINE_LENGTH]
    return [
        TimelineEntry(
            at=line.created_at,
            title=str(_("Balance: %(type)s") % {"type": line.get_type_display()}),
            detail=" · ".join(
                part
                for part in (
                    money(line.amount, line.currency),
                    str(_("new balance %(balance)s") % {
                        "balance": money(line.ending_balance, line.currency)
                    }),
                    line.reference,
                    line.description,
                )
                if part
            ),
            actor=line.actor,
        )
        for line in lines
    ]


def customer_timeline(customer_id, *, with_events: bool, with_balance: bool) -> list:
    """Events and balance ledger lines, newest first: two queries, merged here."""
    entries = (event_entries(customer_id) if with_events else []) + (
        balance_entries(customer_id) if with_balance else []
    )
    entries.sort(key=lambda entry: entry.at, reverse=True)
    return entries[:TIMELINE_LENGTH]


class CustomerInvoicingForm(CustomerForm):
    def clean_currency(self):
        currency = super().clean_currency()
        if self.is_new or currency == self.instance.currency:
            return currency
        if Invoice.objects.filter(customer=self.instance).exists():
            raise ValidationError(
                _("The currency cannot change: this customer already has invoices in "
                  "%(currency)s."),
                params={"currency": self.instance.currency},
            )
        return currency


class PaymentMethodInline(admin.TabularInline):
    """The customer's payment methods, on the customer page (added from their screen)."""

    model = PaymentMethod
    fk_name = "customer"
    fields = ["__str__", "type", "status", "exp_month", "exp_year", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False


class CustomerWithInvoicesAdmin(CustomerAdmin):
    form = CustomerInvoicingForm
    paginator = CappedCountPaginator  # the customer list never counts the whole table
    inlines = [*CustomerAdmin.inlines, PaymentMethodInline]
    change_form_template = "admin/customers/customer/change_form_invoicing.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        customer_id = unquote(object_id)
        user = request.user
        can_see_invoices = user.has_perm("invoices.view_invoice")
        can_see_balance = user.has_perm("customers.view_balancetransaction")
        # Callables: the template evaluates them only when the page is rendered.
        extra_context = {
            **(extra_context or {}),
            "can_see_invoices": can_see_invoices,
            "customer_invoices": lambda: invoice_rows(customer_id) if can_see_invoices else [],
            "customer_timeline": lambda: customer_timeline(
                customer_id, with_events=can_see_invoices, with_balance=can_see_balance
            ),
            "all_invoices_url": admin_url("invoices_invoice_changelist"),
        }
        return super().change_view(request, object_id, form_url, extra_context)


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerWithInvoicesAdmin)
