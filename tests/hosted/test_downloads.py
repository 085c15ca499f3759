"""The invoice PDF and the receipts, downloaded from the page; the seller's branding."""

import io
from datetime import UTC, datetime

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from customers.errors import DomainError
from invoices.documents.models import Document
from invoices.hosted.branding import contrast_ratio, page_branding
from invoices.models import Branding
from invoices.services import invoice_record_payment

from ..factories import NOW, STAFF, make_customer, make_open
from .conftest import page_url, text_of

pytestmark = pytest.mark.usefixtures("frozen")


def pdf_of(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def paid_twice():
    invoice = make_open(make_customer(name="Acme"), lines=((1, 10000),))
    first = invoice_record_payment(invoice, amount=4000, method="cheque", now=NOW, actor=STAFF)
    second = invoice_record_payment(invoice, amount=6000, method="cheque", now=NOW, actor=STAFF)
    return invoice, first, second


def test_the_invoice_pdf_downloads_from_the_page(client):
    invoice = make_open()
    body = client.get(page_url(invoice)).content.decode()
    assert f'href="{page_url(invoice, "pdf")}?lang=en"' in body

    response = client.get(page_url(invoice, "pdf"))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'attachment; filename="{invoice.number}.pdf"' == response["Content-Disposition"]
    assert pdf_of(response).startswith(b"%PDF")
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "no-store"


def test_the_stored_pdf_is_served_again_without_rendering(client):
    invoice = make_open()
    client.get(page_url(invoice, "pdf"))
    client.get(page_url(invoice, "pdf"))
    assert Document.objects.filter(invoice=invoice, kind="invoice").count() == 1


def test_each_payment_has_its_receipt(client, paid_twice):
    invoice, first, second = paid_twice
    body = client.get(page_url(invoice)).content.decode()
    for payment in (first, second):
        url = page_url(invoice, f"receipts/{payment.pk}.pdf")
        assert f'href="{url}?lang=en"' in body
        response = client.get(url)
        assert response.status_code == 200
        assert response["Content-Disposition"].startswith('attachment; filename="')
        assert pdf_of(response).startswith(b"%PDF")


def test_never_another_invoices_receipt(client, paid_twice):
    invoice, first, _second = paid_twice
    other = make_open()
    reference = client.get("/i/" + "A" * 43 + "/")
    for url in (
        page_url(other, f"receipts/{first.pk}.pdf"),  # a real payment, of another invoice
        page_url(invoice, "receipts/999999.pdf"),
        page_url(invoice, "receipts/abc.pdf"),
        page_url(invoice, f"receipts/{first.pk}"),
        page_url(invoice, "receipts/-1.pdf"),
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert text_of(response) == text_of(reference)
    assert not Document.objects.filter(kind="receipt", status="rendered").exists()


def test_downloads_of_an_expired_link_show_the_expired_page(client, frozen, paid_twice):
    invoice, first, _second = paid_twice
    frozen.move_to(datetime(2026, 5, 3, tzinfo=UTC))
    for url in (page_url(invoice, "pdf"), page_url(invoice, f"receipts/{first.pk}.pdf")):
        response = client.get(url)
        assert response.status_code == 410
        assert "This link has expired" in response.content.decode()


def test_a_pdf_that_cannot_be_made_is_a_clear_page(client, monkeypatch):
    invoice = make_open()

    def refuse(*args, **kwargs):
        raise DomainError("The PDF of this invoice could not be made just now.")

    monkeypatch.setattr("invoices.hosted.views.document_ensure", refuse)
    response = client.get(page_url(invoice, "pdf"))
    assert response.status_code == 503
    assert "could not be made just now" in response.content.decode()


# --- branding -------------------------------------------------------------------------


def png_upload(colour=(200, 30, 30)) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), colour).save(buffer, "PNG")
    return SimpleUploadedFile("icon.png", buffer.getvalue(), content_type="image/png")


def test_the_page_wears_the_sellers_branding(client):
    branding = Branding.load()
    branding.company_name = "Globex Billing"
    branding.accent_colour = "#7A1F5C"
    branding.support_email = "help@globex.example"
    branding.city = "Lyon"
    branding.icon = png_upload()
    branding.save()
    invoice = make_open()

    body = client.get(page_url(invoice)).content.decode()

    assert "Globex Billing" in body and "Lyon" in body
    assert "--accent: #7A1F5C" in body and 'href="mailto:help@globex.example"' in body
    icon = body.split('<img src="')[1].split('"')[0]
    response = client.get(icon)
    assert response.status_code == 200
    assert b"".join(response.streaming_content).startswith(b"\x89PNG")
    assert "max-age" in response["Cache-Control"]


def test_no_icon_is_the_not_found_page(client):
    assert client.get("/i/branding/icon").status_code == 404


@pytest.mark.parametrize("accent", ["#FFFF00", "#F0F0F0", "#1F4E79", "#000000", "#FF0000"])
def test_text_on_any_accent_colour_stays_readable(accent):
    branding = page_branding(Branding(accent_colour=accent))
    assert contrast_ratio(branding.accent, branding.accent_ink) >= 4.5
    assert contrast_ratio(branding.link, "#ffffff") >= 4.5


def test_the_page_shows_the_sellers_logo_when_one_is_set(client):
    branding = Branding.load()
    branding.company_name = "Globex Billing"
    branding.icon = png_upload()
    branding.logo = png_upload(colour=(10, 120, 40))
    branding.save()
    invoice = make_open()

    body = client.get(page_url(invoice)).content.decode()

    brand = body.split('<div class="brand">')[1].split("</div>")[0]
    assert '<img class="logo" src="/i/branding/logo?v=' in brand and 'alt="Globex Billing"' in brand
    response = client.get(brand.split('src="')[1].split('"')[0].replace("&amp;", "&"))
    assert response.status_code == 200
    logo = b"".join(response.streaming_content)
    assert logo == Branding.load().logo.open("rb").read()
    assert "max-age" in response["Cache-Control"]


def test_no_logo_is_the_not_found_page(client):
    assert client.get("/i/branding/logo").status_code == 404
