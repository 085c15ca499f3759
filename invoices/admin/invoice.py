"""The invoice screens: list, draft editing, object buttons and bulk actions, timeline.
Thin: every change goes through a domain function, and a refusal (DomainError) is
shown to the person as-is with nothing changed."""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache, partial

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.loader import render_to_string
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html, format_html_join
from django.utils.translation import get_language, gettext_lazy, ngettext, pgettext_lazy
from django.utils.translation import gettext as _

from customers.admin_base import style_form
from customers.clock import now_for, system_now
from customers.errors import DomainError
from customers.models import Customer
from customers.money import to_decimal

from ..collection import invoice_charge
from ..credit_notes import credit_note_create, creditable_amount
from ..documents.services import document_ensure, draft_preview_pdf
from ..forms import (
    CreditNoteForm,
    CreditNoteLineFormSet,
    InvoiceAddForm,
    InvoiceChangeForm,
    InvoiceLineForm,
    InvoiceLineFormSet,
    RecordPaymentForm,
    received_at_initial,
)
from ..hosted import hosted_url
from ..hosted.links import hosted_link_revoke, hosted_link_rotate, link_expires_at
from ..lookups import among
from ..models import (
    Event,
    Invoice,
    InvoiceLine,
    InvoicingSettings,
    PaymentAttempt,
)
from ..pagination import CappedCountPaginator
from ..review import held_payment_book, held_payment_release
from ..services import (
    FROZEN_EDITABLE,
    invoice_create,
    invoice_delete,
    invoice_finalize,
    invoice_lock,
    invoice_mark_uncollectible,
    invoice_recalculate,
    invoice_record_payment,
    invoice_revise,
    invoice_update,
    invoice_void,
)
from ..totals import invoice_totals_shown
from ..transitions import ALLOWED, S
from .common import (
    DomainRefusalAdmin,
    QuickCheckboxMixin,
    TabularInline,
    change_url,
    may,
    money,
    money_column,
    report_failures,
    staff,
)
from .documents import document_response, pdf_response
from .timeline import timeline_rows

# --- changelist filters -------------------------------------------------------------

NEVER = datetime(9999, 12, 31, tzinfo=UTC)

sortable_money = partial(money_column, sortable=True)


class PastDueFilter(admin.SimpleListFilter):
    title = gettext_lazy("past due")
    parameter_name = "past_due"

    def lookups(self, request, model_admin):
        return [("yes", gettext_lazy("Past due"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            # Not a status (DESIGN.md 2): open, and either overdue or its automatic payment
            # failed, both kept in past_due_at (Invoice.is_past_due, which the column shows).
            # Compared through COALESCE on purpose: on the bare column PostgreSQL guesses
            # few matches (it multiplies "open" by "past_due_at <= now" as if unrelated),
            # sorts every past-due invoice by the past-due index (~170 ms for 26,000), where
            # walking the open invoices in the list's order (invoice_open_list_idx)
            # reads only the page.
            due = Coalesce("past_due_at", Value(NEVER))
            return queryset.filter(status=S.OPEN).alias(due=due).filter(due__lte=system_now())
        return queryset


def customer_kinds(request) -> set[tuple[str, str]]:
    """The (currency, segment) pairs the customers have, for the two filters offering them:
    one query for both, kept on the request."""
    if not hasattr(request, "_customer_kinds"):
        pairs = Customer.objects.order_by().values_list("currency", "segment").distinct()
        request._customer_kinds = set(pairs)
    return request._customer_kinds


class CurrencyFilter(admin.SimpleListFilter):
    title = gettext_lazy("currency")
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        # From the customers (an invoice has its customer's currency, locked once invoiced):
        # DISTINCT over the invoices read a million rows on every page (~200 ms).
        currencies = sorted({currency for currency, _segment in customer_kinds(request)})
        return [(currency, currency) for currency in currencies]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


class CustomerSegmentFilter(admin.SimpleListFilter):
    title = gettext_lazy("customer segment")
    parameter_name = "segment"

    def lookups(self, request, model_admin):
        segments = sorted({segment for _currency, segment in customer_kinds(request) if segment})
        return [(segment, segment) for segment in segments]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(customers_among(Customer.objects.filter(segment=self.value())))
        return queryset


def customers_among(customers) -> Q:
    """The invoices of these customers, their ids fetched first: PostgreSQL then knows how
    many invoices they have and counts them from the customer index. A subquery is planned
    blind (it took a name search matching every customer for one customer, 14 s)."""
    return among("customer_id", customers.order_by().values_list("pk", flat=True))


# --- invoice lines --------------------------------------------------------------------


class InvoiceLineInline(TabularInline):
    model = InvoiceLine
    form = InvoiceLineForm
    formset = InvoiceLineFormSet
    extra = 1
    fields = [
        "description", "quantity", "unit_amount", "period_start", "period_end", "tax_rates",
        "discount_percent", "discount_amount", "net_amount", "tax", "line_total",
    ]
    readonly_fields = ["net_amount", "tax", "line_total"]
    # A finalized invoice's lines, read in the invoice's currency.
    FROZEN_FIELDS = [
        "description", "quantity", "unit_amount_display", "period_start", "period_end",
        "tax_rates", "discount_percent", "discount_amount_display", "net_amount", "tax",
        "line_total",
    ]

    def get_fields(self, request, obj=None):
        return self.fields if self._editable(obj) else self.FROZEN_FIELDS

    def get_readonly_fields(self, request, obj=None):
        return self.readonly_fields if self._editable(obj) else self.FROZEN_FIELDS

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("invoice").prefetch_related("tax_rates")

    def _editable(self, obj) -> bool:
        return obj is None or obj.is_draft

    def get_extra(self, request, obj=None, **kwargs):
        return self.extra if self._editable(obj) else 0

    def has_add_permission(self, request, obj=None):
        return self._editable(obj) and super().has_add_permission(request, obj)

    def has_change_permission(self, request, obj=None):
        return self._editable(obj) and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None):
        return self._editable(obj) and super().has_delete_permission(request, obj)

    def has_view_permission(self, request, obj=None):
        return self.admin_site.get_model_admin(Invoice).has_view_permission(request, obj)

    @admin.display(description=gettext_lazy("unit amount"))
    def unit_amount_display(self, line):
        return money(line.unit_amount, line.invoice.currency)

    @admin.display(description=gettext_lazy("discount amount"))
    def discount_amount_display(self, line):
        return money(line.discount_amount, line.invoice.currency) if line.discount_amount else "—"

    @admin.display(description=gettext_lazy("net"))
    def net_amount(self, line):
        return money(line.amount_excluding_tax, line.invoice.currency) if line.pk else "—"

    @admin.display(description=gettext_lazy("tax"))
    def tax(self, line):
        return money(line.tax_amount, line.invoice.currency) if line.pk else "—"

    @admin.display(description=gettext_lazy("line total"))
    def line_total(self, line):
        if not line.pk:
            return "—"
        return money(line.amount_excluding_tax + line.tax_amount, line.invoice.currency)


# --- invoice operations: object buttons and bulk actions share one table ------------


@dataclass(frozen=True)
class Operation:
    name: str
    label: str
    permission: str  # codename in the invoices app
    allowed: Callable[[Invoice], bool]
    run: Callable  # (invoice, *, now, actor) -> result
    done: Callable[[int], str]  # "N invoices finalized"
    named: Callable[[Invoice, object], str] = None  # "Finalized as ACME-0001."
    primary: bool = False  # a button of its own on the invoice page, else in the menu
    danger: bool = False


def _allows(target):
    return lambda invoice: target in ALLOWED.get(invoice.status, set())


def _chargeable(invoice: Invoice) -> bool:
    return (
        invoice.status in (S.OPEN, S.UNCOLLECTIBLE)
        and invoice.amount_remaining > 0
        and (invoice.default_payment_method_id is not None
             or invoice.customer.default_payment_method_id is not None)
    )


def _payment_retry(invoice: Invoice, *, now, actor) -> PaymentAttempt:
    """Charge the default payment method now; a decline is reported as an error (the
    attempt stays on the invoice's history)."""
    attempt = invoice_charge(invoice, now=now, actor=actor, source=PaymentAttempt.Source.STAFF)
    if attempt.status == PaymentAttempt.Status.FAILED:
        raise DomainError(_("The payment was declined (%(code)s): %(message)s") % {
            "code": attempt.decline_code, "message": attempt.failure_message})
    if attempt.status != PaymentAttempt.Status.SUCCEEDED:
        raise DomainError(_("The payment is %(status)s; the invoice's history will show how it "
                            "ends.") % {"status": attempt.get_status_display().lower()})
    return attempt


def _held_for_review(invoice: Invoice) -> bool:
    return invoice.payment_hold == "gateway_review"


def _number(invoice: Invoice) -> str:
    return invoice.number or _("Draft #%(id)s") % {"id": invoice.pk}


OPERATIONS = {
    "finalize": Operation(
        "finalize", gettext_lazy("Finalize"), "change_invoice", _allows(S.OPEN), invoice_finalize,
        lambda n: ngettext("%(count)d invoice finalized.", "%(count)d invoices finalized.", n),
        named=lambda invoice, result: _("Finalized as %(number)s.") % {
            "number": _number(result if isinstance(result, Invoice) else invoice)},
        primary=True,
    ),
    "void": Operation(
        "void", pgettext_lazy("invoice action", "Void"), "change_invoice", _allows(S.VOID),
        invoice_void,
        lambda n: ngettext("%(count)d invoice voided.", "%(count)d invoices voided.", n),
        named=lambda invoice, result: _("%(number)s voided.") % {"number": _number(invoice)},
        danger=True,
    ),
    "mark_uncollectible": Operation(
        "mark_uncollectible", gettext_lazy("Mark uncollectible"), "change_invoice",
        _allows(S.UNCOLLECTIBLE), invoice_mark_uncollectible,
        lambda n: ngettext(
            "%(count)d invoice marked uncollectible.", "%(count)d invoices marked uncollectible.", n
        ),
        named=lambda invoice, result: _("%(number)s marked uncollectible.") % {
            "number": _number(invoice)},
        danger=True,
    ),
    "retry_payment": Operation(
        "retry_payment", gettext_lazy("Charge now"), "add_payment", _chargeable, _payment_retry,
        lambda n: ngettext("%(count)d payment taken.", "%(count)d payments taken.", n),
        named=lambda invoice, attempt: _("Payment of %(amount)s taken on %(number)s.") % {
            "amount": money(attempt.amount, attempt.currency), "number": _number(invoice)},
        primary=True,
    ),
    "revise": Operation(
        "revise", gettext_lazy("Revise"), "change_invoice", _allows(S.VOID), invoice_revise,
        lambda n: ngettext(
            "%(count)d invoice voided and copied to a new draft.",
            "%(count)d invoices voided and copied to new drafts.", n,
        ),
        named=lambda invoice, draft: _(
            "%(number)s voided; you are editing its copy, %(draft)s.") % {
            "number": _number(invoice), "draft": _number(draft)},
    ),
}
OPERATIONS.update({
    "rotate_link": Operation(
        "rotate_link", gettext_lazy("New page link"), "change_invoice",
        lambda invoice: not invoice.is_draft, hosted_link_rotate,
        lambda n: ngettext(
            "%(count)d invoice has a new page link; links sent before no longer work.",
            "%(count)d invoices have a new page link; links sent before no longer work.", n,
        ),
        named=lambda invoice, result: _(
            "%(number)s has a new page link; links sent before no longer work.") % {
            "number": _number(invoice)},
    ),
    "revoke_link": Operation(
        "revoke_link", gettext_lazy("Revoke page link"), "change_invoice",
        lambda invoice: bool(invoice.hosted_token_hash), hosted_link_revoke,
        lambda n: ngettext(
            "%(count)d invoice page link revoked.", "%(count)d invoice page links revoked.", n
        ),
        named=lambda invoice, result: _("The page link of %(number)s was revoked.") % {
            "number": _number(invoice)},
        danger=True,
    ),
})
OPERATIONS.update({
    # A payment whose gateway answer did not match its request (invoices.review).
    "book_held_payment": Operation(
        "book_held_payment", gettext_lazy("Held payment: book it"), "add_payment",
        _held_for_review, held_payment_book,
        lambda n: ngettext("%(count)d held payment booked.", "%(count)d held payments booked.", n),
        named=lambda invoice, result: _("The held payment of %(number)s was booked.") % {
            "number": _number(invoice)},
    ),
    "release_held_payment": Operation(
        "release_held_payment", gettext_lazy("Held payment: release to collection"),
        "add_payment", _held_for_review, held_payment_release,
        lambda n: ngettext(
            "%(count)d held payment released; the invoice is collected again.",
            "%(count)d held payments released; the invoices are collected again.", n,
        ),
        named=lambda invoice, result: _(
            "The held payment of %(number)s was released; the invoice is collected again."
        ) % {"number": _number(invoice)},
        danger=True,
    ),
})
CONFIRMED_OPERATIONS = {"void", "revise", "mark_uncollectible", "rotate_link", "revoke_link",
                        "book_held_payment", "release_held_payment"}
RECORD_PAYMENT_PERMISSION = "add_payment"
CREDIT_NOTE_PERMISSION = "add_creditnote"
CREDITABLE = {S.OPEN, S.PAID}


# --- invoices -------------------------------------------------------------------------


@admin.register(Invoice)
class InvoiceAdmin(QuickCheckboxMixin, DomainRefusalAdmin):
    list_display = [
        "number_label", "customer", "status_badge", "total_display", "remaining_display",
        "due_date",
    ]
    list_filter = [
        "status", "collection_method", CurrencyFilter, PastDueFilter, CustomerSegmentFilter,
    ]
    # Only enables the search box: get_search_results does the index-friendly search.
    search_fields = ["number"]
    search_help_text = gettext_lazy("Invoice number (or its beginning), customer name or email.")
    list_select_related = ["customer"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50
    # "Show all" only up to 100 rows, the largest page bench/changelist.py measures: 200
    # rows take more CPU than 100 (rendering the list is ~0.2 ms a row, customers.admin_list).
    list_max_show_all = 100
    list_rows_fast = True  # customers.admin_list
    raw_id_fields = ["customer"]
    form = InvoiceChangeForm
    inlines = [InvoiceLineInline]
    actions = [
        "finalize_selected", "void_selected", "mark_uncollectible_selected", "revise_selected",
        "record_payment_selected", "credit_note_selected", "delete_selected_drafts",
    ]
    change_form_template = "admin/invoices/invoice/change_form.html"

    ADD_FIELDSETS = [
        (None, {"fields": [
            "customer", "invoice_currency", "collection_method", "due_date", "days_until_due",
            "auto_advance",
        ]}),
        (gettext_lazy("Memo and metadata"), {"fields": ["description", "footer", "metadata"]}),
        (gettext_lazy("Invoice discount"), {"fields": ["discount_percent", "discount_amount"]}),
    ]
    CHANGE_FIELDSETS = [
        (None, {"fields": [
            "number_label", "customer", "status_badge", "currency", "collection_method",
            "due_date", "days_until_due", "auto_advance", "automatically_finalizes_at",
        ]}),
        (gettext_lazy("Memo and metadata"), {"fields": ["description", "footer", "metadata"]}),
        (gettext_lazy("Invoice discount"), {"fields": ["discount_percent", "discount_amount"]}),
        (gettext_lazy("Totals"), {"fields": ["totals_table"]}),
        (gettext_lazy("Collection"), {"fields": [
            "attempt_count", "next_payment_attempt", "next_payment_attempt_reason",
            "payment_hold", "last_payment_error", "last_decline_code", "past_due_display",
            "attempts_table",
        ]}),
        (gettext_lazy("Invoice page"), {"fields": ["hosted_page"]}),
        (gettext_lazy("History"), {"fields": [
            "created_at", "finalized_at", "paid_at", "voided_at", "marked_uncollectible_at",
            "from_invoice",
        ]}),
    ]
    DRAFT_EDITABLE = {
        "collection_method", "due_date", "days_until_due", "auto_advance", "description",
        "footer", "metadata", "discount_percent", "discount_amount",
    }

    # --- columns and read-only values ---

    @admin.display(description=gettext_lazy("number"), ordering="number")
    def number_label(self, invoice):
        return invoice.number or _("Draft #%(id)s") % {"id": invoice.pk}

    @admin.display(description=gettext_lazy("status"), ordering="status")
    def status_badge(self, invoice):
        return status_badges(invoice.status, past_due_days(invoice, system_now()),
                             get_language())

    @admin.display(description=gettext_lazy("past due"))
    def past_due_display(self, invoice):
        """When it became past due, or when it will if still unpaid: never "since" a
        date that has not come."""
        if invoice.past_due_at is None or invoice.status != S.OPEN:
            return "—"
        when = date_format(timezone.localtime(invoice.past_due_at), "DATETIME_FORMAT")
        days = past_due_days(invoice, system_now())
        if days is None:
            return _("Not past due; it will be from %(when)s if still unpaid.") % {"when": when}
        return ngettext(
            "Past due since %(when)s (%(n)d day).", "Past due since %(when)s (%(n)d days).", days
        ) % {"when": when, "n": days}

    @admin.display(description=gettext_lazy("payment attempts"))
    def attempts_table(self, invoice):
        attempts = list(invoice.payment_attempts.order_by("-created_at", "-id")[:50])
        if not attempts:
            return "—"
        rows = format_html_join(
            "", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    date_format(timezone.localtime(a.created_at), "SHORT_DATETIME_FORMAT"),
                    a.get_source_display(), a.method_label, money(a.amount, a.currency),
                    a.get_status_display(),
                    " ".join(filter(None, [a.decline_code, a.failure_message])) or "",
                )
                for a in attempts
            ),
        )
        return format_html(
            "<table><thead><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th>"
            "<th>{}</th></tr></thead><tbody>{}</tbody></table>",
            _("when"), _("source"), _("charged"), _("amount"), _("status"), _("why"), rows,
        )

    @admin.display(description=gettext_lazy("customer's page"))
    def hosted_page(self, invoice):
        """The link to send the customer, and until when it works."""
        url = hosted_url(invoice)
        if not url:
            return _("No live link (draft, or revoked). Use “New page link” to issue one.")
        expires_at = link_expires_at(invoice, InvoicingSettings.load())
        return format_html(
            '<a href="{}" target="_blank" rel="noreferrer noopener">{}</a><br>{}', url, url,
            _("Works until %(date)s (UTC).") % {"date": f"{expires_at:%Y-%m-%d %H:%M}"},
        )

    @admin.display(description=gettext_lazy("totals"))
    def totals_table(self, invoice):
        """The rows the customer reads (invoices.totals), from subtotal to amount due."""
        return render_to_string(
            "admin/invoices/invoice/_totals.html", {"rows": invoice_totals_shown(invoice)}
        )

    total_display = sortable_money("total", gettext_lazy("total"))
    remaining_display = sortable_money("amount_remaining", gettext_lazy("amount remaining"))
    subtotal_display = sortable_money("subtotal", gettext_lazy("subtotal"))
    discount_display = sortable_money("total_discount_amount", gettext_lazy("discounts"))
    tax_display = sortable_money("tax", gettext_lazy("tax"))
    starting_balance_display = sortable_money("starting_balance", gettext_lazy("starting balance"))
    amount_due_display = sortable_money("amount_due", gettext_lazy("amount due"))
    amount_paid_display = sortable_money("amount_paid", gettext_lazy("amount paid"))

    # --- search: number by exact match or prefix, customers through their own indexes ---

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip()
        if not term:
            return queryset, False
        customers = Customer.objects.filter(Q(name__icontains=term) | Q(email__icontains=term))
        segment = request.GET.get(CustomerSegmentFilter.parameter_name)
        if segment:
            # The list is already that segment's: the same result, but one short list of
            # customers instead of two long ones (PostgreSQL then scanned the table to count).
            customers = customers.filter(segment=segment)
        matches = customers_among(customers)
        # Most searches are a name or an email, which no invoice number starts with:
        # without that OR, the customers' invoices are counted from the customer index
        # alone (the OR made PostgreSQL read each of them in the table).
        number = term.upper()
        if Invoice.objects.filter(number__startswith=number).exists():
            matches |= Q(number__startswith=number)
        return queryset.filter(matches), False

    # --- forms ---

    def get_fieldsets(self, request, obj=None):
        if obj is None:
            return self.ADD_FIELDSETS
        if obj.is_draft:
            return self.CHANGE_FIELDSETS
        # Frozen: the discount is read in the invoice's currency.
        return [
            (title, {**options, "fields": [
                "invoice_discount_display" if name == "discount_amount" else name
                for name in options["fields"]
            ]})
            for title, options in self.CHANGE_FIELDSETS
        ]

    @admin.display(description=gettext_lazy("discount amount"))
    def invoice_discount_display(self, invoice):
        return money(invoice.discount_amount, invoice.currency)

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = InvoiceAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        fields = [
            name for _title, options in self.get_fieldsets(request, obj)
            for name in options["fields"]
        ]
        if obj.is_draft:
            return [name for name in fields if name not in self.DRAFT_EDITABLE]
        # The form's declared discount field goes too (shown as invoice_discount_display).
        return [name for name in fields if name not in FROZEN_EDITABLE] + ["discount_amount"]

    def save_model(self, request, obj, form, change):
        now = now_for(obj.customer)
        if not change:
            fields = {name: form.cleaned_data[name] for name in self.DRAFT_EDITABLE}
            fields["metadata"] = fields["metadata"] or {}
            footer = fields.pop("footer")
            created = invoice_create(customer=obj.customer, now=now, actor=staff(request), **fields)
            if footer:
                created = invoice_update(created, now=now, actor=staff(request), footer=footer)
            _adopt(obj, created)
            return
        changes = {
            name: form.cleaned_data[name] for name in form.changed_data
            if name in self.DRAFT_EDITABLE
        }
        if "metadata" in changes:
            changes["metadata"] = changes["metadata"] or {}
        if changes:
            invoice_update(obj, now=now, actor=staff(request), **changes)

    def save_related(self, request, form, formsets, change):
        invoice = form.instance
        if change and not invoice.is_draft:
            # Finalized: the lines inline is read-only, so this saves nothing.
            return super().save_related(request, form, formsets, change)
        locked = invoice_lock(invoice)
        if not locked.is_draft:
            raise DomainError(_("Only drafts can be edited; use a credit note or revise."))
        super().save_related(request, form, formsets, change)
        invoice_recalculate(locked)

    def save_formset(self, request, form, formset, change):
        lines = formset.save(commit=False)
        for line in formset.deleted_objects:
            line.delete()
        last = form.instance.lines.order_by("-position").values_list("position", flat=True).first()
        next_position = 0 if last is None else last + 1
        for line in lines:
            if line.pk is None:
                line.position = next_position
                next_position += 1
            line.save()
        formset.save_m2m()

    def change_view(self, request, object_id, form_url="", extra_context=None):
        invoice = self.get_object(request, unquote(object_id))
        if invoice is not None:
            extra_context = {
                **(extra_context or {}),
                "invoice_buttons": self._buttons(request, invoice),
                "timeline": timeline(invoice),
            }
            if not invoice.is_draft:
                # Frozen: memo and metadata only, saved where they are.
                extra_context.update(show_save_and_add_another=False, show_save_and_continue=False)
        return super().change_view(request, object_id, form_url, extra_context)

    # --- deletion: drafts only, through the domain ---

    def has_delete_permission(self, request, obj=None):
        if obj is not None and not obj.is_draft:
            return False
        return super().has_delete_permission(request, obj)

    def delete_model(self, request, obj):
        invoice_delete(obj, now=now_for(obj.customer), actor=staff(request))

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    # --- object buttons ---

    def _buttons(self, request, invoice) -> list[dict]:
        """The page's actions: the primary ones as buttons, the others in a menu."""
        buttons = [
            {"label": op.label, "url": self._op_url(op.name, invoice), "post": True,
             "confirm": op.name in CONFIRMED_OPERATIONS, "primary": op.primary,
             "danger": op.danger}
            for op in OPERATIONS.values()
            if op.allowed(invoice) and may(request, op.permission)
        ]
        if _allows(S.PAID)(invoice) and may(request, RECORD_PAYMENT_PERMISSION):
            buttons.insert(0, {"label": _("Record payment"), "post": False, "primary": True,
                               "url": self._op_url("record_payment", invoice)})
        if invoice.status in CREDITABLE and may(request, CREDIT_NOTE_PERMISSION):
            buttons.append({"label": _("Create credit note"), "post": False,
                            "url": self._op_url("credit_note", invoice)})
        label = _("Preview PDF") if invoice.is_draft else _("Download PDF")
        buttons.append({"label": label, "post": False, "url": self._op_url("pdf", invoice),
                        "primary": True})
        return {
            "primary": [b for b in buttons if b.get("primary")],
            "menu": [b for b in buttons if not b.get("primary")],
        }

    def _op_url(self, name, invoice) -> str:
        return reverse(f"admin:invoices_invoice_{name}", args=[invoice.pk])

    def get_urls(self):
        wrap = self.admin_site.admin_view
        urls = [
            path(
                f"<path:object_id>/{name.replace('_', '-')}/",
                wrap(self._operation_view(name)),
                name=f"invoices_invoice_{name}",
            )
            for name in OPERATIONS
        ]
        urls += [
            path("<path:object_id>/record-payment/", wrap(self.record_payment_view),
                 name="invoices_invoice_record_payment"),
            path("<path:object_id>/credit-note/", wrap(self.credit_note_view),
                 name="invoices_invoice_credit_note"),
            path("<path:object_id>/pdf/", wrap(self.pdf_view), name="invoices_invoice_pdf"),
        ]
        return urls + super().get_urls()

    def _operation_view(self, name):
        def view(request, object_id):
            return self.operation_view(request, object_id, OPERATIONS[name])
        return view

    def _invoice_or_redirect(self, request, object_id):
        invoice = self.get_object(request, unquote(object_id))
        if invoice is None:
            return None, self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return invoice, None

    def operation_view(self, request, object_id, operation: Operation):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not may(request, operation.permission):
            raise PermissionDenied
        invoice, missing = self._invoice_or_redirect(request, object_id)
        if missing:
            return missing
        try:
            result = operation.run(invoice, now=now_for(invoice.customer), actor=staff(request))
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect(change_url(invoice))
        self.message_user(request, operation.named(invoice, result), messages.SUCCESS)
        # Revise returns the new draft: staff continue editing there.
        return redirect(change_url(result if isinstance(result, Invoice) else invoice))

    def pdf_view(self, request, object_id):
        """A draft's preview, rendered now; a finalized invoice's stored PDF."""
        invoice, missing = self._invoice_or_redirect(request, object_id)
        if missing:
            return missing
        try:
            if invoice.is_draft:
                return pdf_response(draft_preview_pdf(invoice), f"draft-{invoice.pk}.pdf")
            return document_response(document_ensure("invoice", invoice))
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect(change_url(invoice))

    def record_payment_view(self, request, object_id):
        if not may(request, RECORD_PAYMENT_PERMISSION):
            raise PermissionDenied
        invoice, missing = self._invoice_or_redirect(request, object_id)
        if missing:
            return missing
        now = now_for(invoice.customer)
        if request.method == "POST":
            form = RecordPaymentForm(request.POST, invoice=invoice)
            if form.is_valid() and self._record_payment(request, invoice, form, now):
                return redirect(change_url(invoice))
        else:
            form = RecordPaymentForm(invoice=invoice, initial={
                "amount": to_decimal(invoice.amount_remaining, invoice.currency),
                "received_at": received_at_initial(now),
            })
        return self._form_page(
            request, invoice, "admin/invoices/invoice/record_payment.html",
            title=_("Record a payment on %(invoice)s") % {"invoice": invoice},
            form=form, media=self.media + form.media,
        )

    def _record_payment(self, request, invoice, form, now) -> bool:
        data = form.cleaned_data
        try:
            invoice_record_payment(
                invoice, amount=data["amount"], method=data["method"], now=now,
                actor=staff(request), received_at=data["received_at"],
                reference=data["reference"], credit_excess=data["credit_excess"],
            )
        except DomainError as error:
            form.add_error(None, error.message)
            return False
        self.message_user(request, _("Payment of %(amount)s recorded on %(invoice)s.") % {
            "amount": money(data["amount"], invoice.currency), "invoice": invoice,
        }, messages.SUCCESS)
        return True

    def credit_note_view(self, request, object_id):
        if not may(request, CREDIT_NOTE_PERMISSION):
            raise PermissionDenied
        invoice, missing = self._invoice_or_redirect(request, object_id)
        if missing:
            return missing
        data = request.POST if request.method == "POST" else None
        form = CreditNoteForm(data, invoice=invoice)
        lines = CreditNoteLineFormSet(data, prefix="lines", form_kwargs={"invoice": invoice})
        if data is not None and form.is_valid() and lines.is_valid():
            note = self._credit_note_create(request, invoice, form, lines)
            if note is not None:
                return redirect(change_url(note))
        return self._form_page(
            request, invoice, "admin/invoices/invoice/credit_note.html",
            title=_("Create a credit note on %(invoice)s") % {"invoice": invoice},
            form=form, lines=lines, media=self.media + form.media + lines.media,
            creditable=money(creditable_amount(invoice), invoice.currency),
            remaining=money(invoice.amount_remaining, invoice.currency),
        )

    def _credit_note_create(self, request, invoice, form, lines):
        data = form.cleaned_data
        try:
            note = credit_note_create(
                invoice, lines=lines.credit_lines(), now=now_for(invoice.customer),
                actor=staff(request), reason=data["reason"], memo=data["memo"],
                refund_amount=data["refund_amount"], credit_amount=data["credit_amount"],
                out_of_band_amount=data["out_of_band_amount"], currency=invoice.currency,
            )
        except DomainError as error:
            form.add_error(None, error.message)
            return None
        self.message_user(request, _("Credit note %(number)s created for %(amount)s.") % {
            "number": note.number, "amount": money(note.amount, note.currency),
        }, messages.SUCCESS)
        return note

    def _form_page(self, request, invoice, template, **context):
        style_form(context["form"])
        for line in context.get("lines") or []:
            style_form(line)
        return TemplateResponse(request, template, {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": invoice,
            "invoice_url": change_url(invoice),
            "amount_remaining": money(invoice.amount_remaining, invoice.currency),
            **context,
        })

    # --- bulk actions: each invoice in its own transaction ---

    def _bulk(self, request, queryset, operation: Operation):
        if not may(request, operation.permission):
            raise PermissionDenied
        done, failures = [], []
        for invoice in queryset.select_related("customer").order_by("pk"):
            try:
                with transaction.atomic():
                    result = operation.run(
                        invoice, now=now_for(invoice.customer), actor=staff(request)
                    )
            except DomainError as error:
                failures.append((invoice, error.message))
            else:
                done.append(_number(result if isinstance(result, Invoice)
                                    and operation.name == "finalize" else invoice))
        if done:
            self.message_user(request, named_list(operation.done(len(done)) % {
                "count": len(done)}, done), messages.SUCCESS)
        report_failures(request, failures)

    @admin.action(description=gettext_lazy("Finalize selected drafts"), permissions=["change"])
    def finalize_selected(self, request, queryset):
        self._bulk(request, queryset, OPERATIONS["finalize"])

    @admin.action(description=gettext_lazy("Void selected invoices"), permissions=["change"])
    def void_selected(self, request, queryset):
        self._bulk(request, queryset, OPERATIONS["void"])

    @admin.action(
        description=gettext_lazy("Mark selected invoices uncollectible"), permissions=["change"]
    )
    def mark_uncollectible_selected(self, request, queryset):
        self._bulk(request, queryset, OPERATIONS["mark_uncollectible"])

    @admin.action(
        description=gettext_lazy("Revise selected invoices (void and copy to a draft)"),
        permissions=["change"],
    )
    def revise_selected(self, request, queryset):
        self._bulk(request, queryset, OPERATIONS["revise"])

    def has_record_payment_permission(self, request):
        return may(request, RECORD_PAYMENT_PERMISSION)

    def has_credit_note_permission(self, request):
        return may(request, CREDIT_NOTE_PERMISSION)

    def _one_invoice_form(self, request, queryset, name):
        # A payment or a credit note is typed for one invoice at a time.
        if queryset.count() != 1:
            self.message_user(request, _("Select exactly one invoice for this action."),
                              messages.WARNING)
            return None
        return redirect(self._op_url(name, queryset.get()))

    @admin.action(description=gettext_lazy("Record a payment…"), permissions=["record_payment"])
    def record_payment_selected(self, request, queryset):
        return self._one_invoice_form(request, queryset, "record_payment")

    @admin.action(description=gettext_lazy("Create a credit note…"), permissions=["credit_note"])
    def credit_note_selected(self, request, queryset):
        return self._one_invoice_form(request, queryset, "credit_note")

    @admin.action(description=gettext_lazy("Delete selected drafts"), permissions=["delete"])
    def delete_selected_drafts(self, request, queryset):
        done, failures = 0, []
        for invoice in queryset.select_related("customer").order_by("pk"):
            label = str(invoice)
            try:
                with transaction.atomic():
                    invoice_delete(invoice, now=now_for(invoice.customer), actor=staff(request))
            except DomainError as error:
                failures.append((label, error.message))
            else:
                done += 1
        if done:
            self.message_user(request, ngettext(
                "%(count)d draft deleted.", "%(count)d drafts deleted.", done
            ) % {"count": done}, messages.SUCCESS)
        report_failures(request, failures)


def _adopt(target: Invoice, source: Invoice) -> None:
    """Make the admin's unsaved instance the row the domain created (the inlines hold it)."""
    for field in Invoice._meta.concrete_fields:
        setattr(target, field.attname, getattr(source, field.attname))
    target._state.adding = False
    target._state.db = source._state.db


# --- the timeline -----------------------------------------------------------------------


def timeline(invoice: Invoice) -> list[dict]:
    """The invoice's events, newest first, in one query, in plain words."""
    events = Event.objects.filter(invoice=invoice).order_by("-created_at", "-id")
    return timeline_rows(events, invoice.currency)


@lru_cache(maxsize=1024)
def status_badges(status: str, days: int | None, language: str):
    """The status badge, and the past-due one with its days: made once per status, days
    and language (a list shows few different ones)."""
    # The label from the enum: get_status_display() rebuilds the choices on every
    # call (3 ms of CPU on a 100-row list, measured).
    badge = format_html('<span class="badge badge-{}">{}</span>', status, S(status).label)
    if days is None:
        return badge
    label = ngettext("Past due (%(n)d day)", "Past due (%(n)d days)", days) % {"n": days}
    return format_html('{}<span class="badge badge-past-due">{}</span>', badge, label)


def past_due_days(invoice: Invoice, now) -> int | None:
    """Whole days an open invoice has been past due (0 on its first day), else None."""
    if invoice.status != S.OPEN or invoice.past_due_at is None or invoice.past_due_at > now:
        return None
    return (now - invoice.past_due_at).days


def named_list(sentence: str, names: list[str], shown: int = 10) -> str:
    """"3 invoices finalized." + ": ACME-0001, ACME-0002, ACME-0003" (the first ten)."""
    more = len(names) - shown
    listed = ", ".join(names[:shown]) + (f" (+{more})" if more > 0 else "")
    return f"{sentence.rstrip('.')}: {listed}."
