"""Branding (one row) and the stored documents. Imported by invoices.models so that
Django sees them in the invoices app."""

import re

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from stdnum.eu import vat
from stdnum.fr import siren, siret

from customers.singletons import Singleton

MAX_IMAGE_BYTES = 1024 * 1024
MAX_IMAGE_SIDE = 4000
IMAGE_FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg"}

validate_colour = RegexValidator(
    re.compile(r"^#[0-9A-Fa-f]{6}$"), _("Enter a colour as #RRGGBB, e.g. #1F4E79.")
)


def validate_siren(value: str) -> None:
    if not siren.is_valid(value):
        raise ValidationError(_("A SIREN is 9 digits with a valid check digit."))


def validate_siret(value: str) -> None:
    if not siret.is_valid(value):
        raise ValidationError(_("A SIRET is 14 digits with a valid check digit."))


def validate_vat_number(value: str) -> None:
    if not vat.is_valid(value):
        raise ValidationError(
            _("Enter an EU VAT number with its country prefix, e.g. FR40303265045.")
        )


def image_validate(upload) -> None:
    """A logo or icon as uploaded: PNG or JPEG, at most 1 MB and 4000 px a side.
    SVG is refused: it can carry scripts and external references."""
    from PIL import Image, UnidentifiedImageError

    if upload.size > MAX_IMAGE_BYTES:
        raise ValidationError(
            _("This image is %(size)s KB; the limit is %(max)s KB."),
            params={"size": upload.size // 1024, "max": MAX_IMAGE_BYTES // 1024},
        )
    try:
        upload.seek(0)
        with Image.open(upload) as image:
            image_format, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise ValidationError(_("Upload a PNG or JPEG image; this file is not one.")) from None
    finally:
        upload.seek(0)
    if image_format not in IMAGE_FORMATS:
        raise ValidationError(
            _("Upload a PNG or JPEG image; this file is %(format)s."),
            params={"format": image_format},
        )
    if max(width, height) > MAX_IMAGE_SIDE:
        raise ValidationError(
            _("This image is %(w)s×%(h)s pixels; at most %(max)s pixels a side."),
            params={"w": width, "h": height, "max": MAX_IMAGE_SIDE},
        )


class Branding(Singleton, models.Model):
    """Who the customer deals with, as printed on documents, the hosted page and emails.
    A single row (pk=1), edited in the admin."""

    company_name = models.CharField(_("company name"), max_length=200, blank=True)
    address_line1 = models.CharField(_("address line 1"), max_length=200, blank=True)
    address_line2 = models.CharField(_("address line 2"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    country = models.CharField(
        _("country (ISO 3166 code)"),
        max_length=2,
        default="FR",
        validators=[RegexValidator(r"^[A-Z]{2}$", _("Two capital letters, e.g. FR."))],
    )
    vat_number = models.CharField(
        _("VAT number"), max_length=20, blank=True, validators=[validate_vat_number]
    )
    siren = models.CharField(
        _("SIREN"), max_length=9, blank=True, validators=[validate_siren]
    )
    siret = models.CharField(
        _("SIRET"), max_length=14, blank=True, validators=[validate_siret]
    )
    logo = models.FileField(
        _("logo"), upload_to="branding/", blank=True,
        help_text=_("PNG or JPEG, at most 1 MB. Printed at the top of documents."),
    )
    icon = models.FileField(
        _("icon"), upload_to="branding/", blank=True,
        help_text=_("PNG or JPEG, at most 1 MB, square. Shown on the hosted page."),
    )
    accent_colour = models.CharField(
        _("accent colour"), max_length=7, default="#1F4E79", validators=[validate_colour]
    )
    invoice_footer = models.TextField(
        _("invoice footer"), blank=True,
        help_text=_("Printed at the bottom of every document: legal mentions, bank details."),
    )
    support_email = models.EmailField(_("support email"), blank=True)

    class Meta:
        verbose_name = _("branding")
        verbose_name_plural = _("branding")

    def __str__(self):
        return str(_("Branding"))

    def clean(self):
        if self.siren and self.siret and not self.siret.startswith(self.siren):
            raise ValidationError({"siret": _("A SIRET starts with the company's SIREN.")})

    def address_lines(self) -> list[str]:
        town = " ".join(part for part in (self.postal_code, self.city) if part)
        return [line for line in (self.address_line1, self.address_line2, town) if line]


class Document(models.Model):
    """One rendering of a customer document, stored through Django's storage.

    Rows are written pending, in the transaction of the event that calls for them, and
    rendered by a worker. A finalized invoice gets a new row (a new version) when it is
    paid or voided, so the PDF shows its status (not when it is written off as
    uncollectible: the customer still owes it); the latest
    rendered row is the one served, and the older ones stay as they were sent."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", _("Invoice")
        CREDIT_NOTE = "credit_note", _("Credit note")
        RECEIPT = "receipt", _("Payment receipt")

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        RENDERED = "rendered", _("Rendered")
        FAILED = "failed", _("Failed")

    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    # "invoice:12", "credit_note:3", "receipt:7": the versions of one document share it.
    key = models.CharField(_("key"), max_length=40, editable=False)
    number = models.CharField(_("number"), max_length=64)
    invoice = models.ForeignKey(
        "invoices.Invoice", verbose_name=_("invoice"), on_delete=models.CASCADE,
        related_name="documents", db_index=False,  # document_invoice_idx
    )
    credit_note = models.ForeignKey(
        "invoices.CreditNote", verbose_name=_("credit note"), null=True, blank=True,
        on_delete=models.CASCADE, related_name="documents",
    )
    payment = models.ForeignKey(
        "invoices.Payment", verbose_name=_("payment"), null=True, blank=True,
        on_delete=models.CASCADE, related_name="documents",
    )
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    # The date on the document (finalization, credit note, payment): export --since.
    issued_at = models.DateTimeField(_("issued at"))
    requested_at = models.DateTimeField(_("requested at"))
    file = models.FileField(_("file"), upload_to="documents/", blank=True)
    size = models.PositiveIntegerField(_("size (bytes)"), default=0)
    # The invoice or credit note status printed on this version (open, paid, void...).
    shows_status = models.CharField(_("shows status"), max_length=16, blank=True)
    facturx = models.BooleanField(_("Factur-X"), default=False)
    # Why a finalized invoice went out as a plain PDF/A (e.g. a line with two tax rates).
    note = models.CharField(_("note"), max_length=300, blank=True)
    error = models.TextField(_("error"), blank=True)
    attempts = models.PositiveSmallIntegerField(_("attempts"), default=0)
    # When a failed rendering is tried again; NULL once rendered or given up.
    next_attempt_at = models.DateTimeField(_("next attempt at"), null=True, blank=True)
    rendered_at = models.DateTimeField(_("rendered at"), null=True, blank=True)

    class Meta:
        verbose_name = _("document")
        verbose_name_plural = _("documents")
        ordering = ["-id"]
        indexes = [
            models.Index(fields=["key", "-id"], name="document_key_idx"),
            models.Index(fields=["invoice", "-id"], name="document_invoice_idx"),
            # The sweep's "next action at": pending rows, and failed ones due for a retry.
            models.Index(
                fields=["status", "next_attempt_at"],
                name="document_due_idx",
                condition=Q(status__in=["pending", "failed"]),
            ),
            models.Index(
                fields=["issued_at"], name="document_issued_idx",
                condition=Q(status="rendered"),
            ),
        ]

    def __str__(self):
        return f"{self.get_kind_display()} {self.number}"
