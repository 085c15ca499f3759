"""Branding (one row, Finance admins change it) and the stored documents (read, and
failed renderings retried), plus the PDF responses the invoice screens use."""

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpResponse
from django.shortcuts import redirect
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, ngettext

from customers.errors import DomainError

from ..documents.models import Branding, Document, image_validate
from ..documents.services import document_retry
from .common import ReadOnlyAdmin, SingletonAdmin, change_url


def pdf_response(content: bytes, filename: str, *, inline: bool = True) -> HttpResponse:
    response = HttpResponse(content, content_type="application/pdf")
    disposition = "inline" if inline else "attachment"
    response["Content-Disposition"] = f'{disposition}; filename="{get_valid_filename(filename)}"'
    return response


def document_response(document: Document) -> HttpResponse:
    """The stored file as it is: no rendering. A file gone from storage is a DomainError."""
    try:
        with document.file.open("rb") as stored:
            content = stored.read()
    except (OSError, ValueError):
        raise DomainError(
            _("The file of %(document)s is missing from storage; retry its rendering.")
            % {"document": document}
        ) from None
    return pdf_response(content, f"{document.number}.pdf")


# --- branding ---------------------------------------------------------------------------


class BrandingForm(forms.ModelForm):
    class Meta:
        model = Branding
        fields = [
            "company_name", "address_line1", "address_line2", "postal_code", "city", "country",
            "vat_number", "siren", "siret", "logo", "icon", "accent_colour", "invoice_footer",
            "support_email",
        ]

    def _image(self, name):
        value = self.cleaned_data.get(name)
        if isinstance(value, UploadedFile):  # only a new upload; a stored file stays as is
            image_validate(value)
        return value

    def clean_logo(self):
        return self._image("logo")

    def clean_icon(self):
        return self._image("icon")

    def clean_accent_colour(self):
        return self.cleaned_data["accent_colour"].upper()

    def clean_vat_number(self):
        return self.cleaned_data["vat_number"].replace(" ", "").upper()


@admin.register(Branding)
class BrandingAdmin(SingletonAdmin):
    """A single row: the changelist opens it directly."""

    form = BrandingForm
    fieldsets = [
        (None, {"fields": [
            "company_name", "address_line1", "address_line2", "postal_code", "city", "country",
        ]}),
        (gettext_lazy("Legal identifiers"), {"fields": ["vat_number", "siren", "siret"]}),
        (gettext_lazy("Look"), {"fields": ["logo", "icon", "accent_colour"]}),
        (gettext_lazy("Documents and emails"), {"fields": ["invoice_footer", "support_email"]}),
    ]


# --- stored documents -------------------------------------------------------------------


@admin.register(Document)
class DocumentAdmin(ReadOnlyAdmin):
    list_display = [
        "number", "kind", "status", "shows_status", "facturx", "issued_at", "rendered_at",
        "attempts", "problem", "download",
    ]
    list_filter = ["status", "kind", "facturx"]
    search_fields = ["number"]
    search_help_text = gettext_lazy("Document number (or its beginning).")
    show_full_result_count = False
    actions = ["retry_selected"]
    fields = [
        "number", "kind", "invoice", "credit_note", "payment", "status", "shows_status",
        "facturx", "note", "error", "attempts", "next_attempt_at", "issued_at", "requested_at",
        "rendered_at", "size", "download",
    ]
    readonly_fields = fields

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().upper()
        return (queryset.filter(number__startswith=term), False) if term else (queryset, False)

    @admin.display(description=gettext_lazy("problem"))
    def problem(self, document):
        return (document.error or document.note)[:120]

    @admin.display(description=gettext_lazy("PDF"))
    def download(self, document):
        if document.status != Document.Status.RENDERED:
            return "—"
        url = reverse("admin:invoices_document_download", args=[document.pk])
        return format_html('<a href="{}">{}</a>', url, _("Download"))

    def get_urls(self):
        return [
            path("<path:object_id>/download/", self.admin_site.admin_view(self.download_view),
                 name="invoices_document_download"),
            *super().get_urls(),
        ]

    def download_view(self, request, object_id):
        document = self.get_object(request, unquote(object_id))
        if document is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_view_permission(request, document):
            raise PermissionDenied
        try:
            return document_response(document)
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect(change_url(document))

    def has_retry_permission(self, request):
        return request.user.has_perm("invoices.change_document")

    @admin.action(description=gettext_lazy("Retry rendering"), permissions=["retry"])
    def retry_selected(self, request, queryset):
        failed = list(queryset.filter(status=Document.Status.FAILED))
        for document in failed:
            document_retry(document)
        self.message_user(request, ngettext(
            "%(count)d document will be rendered again within a minute.",
            "%(count)d documents will be rendered again within a minute.", len(failed),
        ) % {"count": len(failed)}, messages.SUCCESS)
