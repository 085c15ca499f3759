"""Payments and credit notes: history written by the domain, read (and voided) here."""


from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.http import HttpResponseNotAllowed
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext, pgettext

from customers.clock import now_for
from customers.errors import DomainError

from ..credit_notes import credit_note_void
from ..documents.services import document_ensure
from ..models import (
    CreditNote,
    CreditNoteLine,
    Payment,
)
from ..pagination import CappedCountPaginator
from .common import (
    QuickCheckboxMixin,
    ReadOnlyAdmin,
    TabularInline,
    change_url,
    may,
    money,
    money_column,
    report_failures,
    staff,
)
from .documents import document_response


def stored_pdf_view(model_admin, request, object_id, kind: str):
    """The stored PDF of a credit note or payment (rendered now if it is not yet)."""
    obj = model_admin.get_object(request, unquote(object_id))
    if obj is None:
        return model_admin._get_obj_does_not_exist_redirect(request, model_admin.opts, object_id)
    try:
        return document_response(document_ensure(kind, obj))
    except DomainError as error:
        model_admin.message_user(request, error.message, messages.ERROR)
        return redirect(change_url(obj))


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = [
        "invoice", "amount_display", "method", "received_at", "reference", "recorded_by",
        "receipt",
    ]
    list_filter = ["method", "currency"]
    list_select_related = ["invoice"]
    search_fields = ["reference"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description=gettext_lazy("amount"), ordering="amount")
    def amount_display(self, payment):
        return money(payment.amount, payment.currency)

    @admin.display(description=gettext_lazy("receipt"))
    def receipt(self, payment):
        url = reverse("admin:invoices_payment_receipt", args=[payment.pk])
        return format_html('<a href="{}">{}</a>', url, _("PDF"))

    def get_urls(self):
        return [
            path("<path:object_id>/receipt/", self.admin_site.admin_view(self.receipt_view),
                 name="invoices_payment_receipt"),
            *super().get_urls(),
        ]

    def receipt_view(self, request, object_id):
        return stored_pdf_view(self, request, object_id, "receipt")


class CreditNoteLineInline(TabularInline):
    model = CreditNoteLine
    fields = ["description", "invoice_line", "amount_display", "tax_display"]
    readonly_fields = fields
    extra = 0
    can_delete = False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("credit_note", "invoice_line")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_view_permission(self, request, obj=None):
        return True

    @admin.display(description=gettext_lazy("amount"))
    def amount_display(self, line):
        return money(line.amount, line.credit_note.currency)

    @admin.display(description=gettext_lazy("of which tax"))
    def tax_display(self, line):
        return money(line.tax, line.credit_note.currency)


CREDIT_NOTE_VOID_PERMISSION = "change_creditnote"


@admin.register(CreditNote)
class CreditNoteAdmin(QuickCheckboxMixin, ReadOnlyAdmin):
    list_display = ["number", "invoice", "status", "type", "amount_display", "created_at"]
    list_filter = ["status", "type", "reason", "currency"]
    list_select_related = ["invoice"]
    search_fields = ["number"]
    show_full_result_count = False
    paginator = CappedCountPaginator
    inlines = [CreditNoteLineInline]
    actions = ["void_selected"]
    change_form_template = "admin/invoices/creditnote/change_form.html"
    fields = [
        "number", "invoice", "status", "type", "reason", "memo", "amount_display", "tax_display",
        "pre_payment_display", "post_payment_display", "refund_display", "credit_display",
        "out_of_band_display", "created_at", "voided_at",
    ]
    readonly_fields = fields

    amount_display = money_column("amount", gettext_lazy("amount"))
    tax_display = money_column("tax", gettext_lazy("of which tax"))
    pre_payment_display = money_column("pre_payment_amount", gettext_lazy("pre-payment part"))
    post_payment_display = money_column("post_payment_amount", gettext_lazy("post-payment part"))
    refund_display = money_column("refund_amount", gettext_lazy("refunded"))
    credit_display = money_column("credit_amount", gettext_lazy("credited to balance"))
    out_of_band_display = money_column(
        "out_of_band_amount", gettext_lazy("credited outside the system")
    )

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        return queryset.filter(number__startswith=term), False

    def has_void_permission(self, request, obj=None):
        return may(request, CREDIT_NOTE_VOID_PERMISSION)

    def get_urls(self):
        return [
            path("<path:object_id>/void/", self.admin_site.admin_view(self.void_view),
                 name="invoices_creditnote_void"),
            path("<path:object_id>/pdf/", self.admin_site.admin_view(self.pdf_view),
                 name="invoices_creditnote_pdf"),
            *super().get_urls(),
        ]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        note = self.get_object(request, unquote(object_id))
        can_void = (
            note is not None and note.status == CreditNote.Status.ISSUED
            and self.has_void_permission(request)
        )
        buttons = {"primary": [], "menu": []}
        if note is not None:
            buttons["primary"].append({"label": _("Download PDF"), "post": False,
                                       "url": reverse("admin:invoices_creditnote_pdf",
                                                      args=[note.pk])})
        if can_void:
            buttons["menu"].append({
                "label": pgettext("credit note action", "Void"), "post": True, "confirm": True,
                "danger": True, "url": reverse("admin:invoices_creditnote_void", args=[note.pk]),
            })
        extra_context = {
            **(extra_context or {}), "can_void": can_void, "credit_note_buttons": buttons,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def pdf_view(self, request, object_id):
        return stored_pdf_view(self, request, object_id, "credit_note")

    def void_view(self, request, object_id):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_void_permission(request):
            raise PermissionDenied
        note = self.get_object(request, unquote(object_id))
        if note is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        try:
            credit_note_void(note, now=now_for(note.invoice.customer), actor=staff(request))
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
        else:
            self.message_user(
                request, _("Credit note %(number)s voided.") % {"number": note.number},
                messages.SUCCESS,
            )
        return redirect(change_url(note))

    @admin.action(description=gettext_lazy("Void selected credit notes"), permissions=["void"])
    def void_selected(self, request, queryset):
        done, failures = 0, []
        for note in queryset.select_related("invoice__customer").order_by("pk"):
            try:
                with transaction.atomic():
                    credit_note_void(
                        note, now=now_for(note.invoice.customer), actor=staff(request)
                    )
            except DomainError as error:
                failures.append((note, error.message))
            else:
                done += 1
        if done:
            self.message_user(request, ngettext(
                "%(count)d credit note voided.", "%(count)d credit notes voided.", done
            ) % {"count": done}, messages.SUCCESS)
        report_failures(request, failures)
