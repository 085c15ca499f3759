"""The branding screen (one row, Finance admins change it, others read it) and the
PDF buttons of the admin: preview of a draft, stored PDFs, failed renderings."""

import io

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse
from PIL import Image

from invoices.credit_notes import CreditLine, credit_note_create
from invoices.documents import render
from invoices.documents.models import Branding, Document
from invoices.services import invoice_record_payment

from .factories import NOW, STAFF, make_customer, make_draft, make_open
from .pdfs import media, pdf_text, render_pending  # noqa: F401  (media: fixture)

pytestmark = pytest.mark.usefixtures("media")
BRANDING_URL = reverse("admin:invoices_branding_change", args=[1])


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def as_member(client, django_user_model):
    def login(group: str):
        user = django_user_model.objects.create_user(
            username=group.lower().replace(" ", "-"), password="pw-staff-123", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


def image(kind="PNG", size=(64, 32), name="logo.png") -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", size, "#1F4E79").save(buffer, kind)
    return SimpleUploadedFile(name, buffer.getvalue())


def form(**changes) -> dict:
    data = {
        "company_name": "Demo Billing SAS", "address_line1": "8 rue du Faubourg Montmartre",
        "address_line2": "", "postal_code": "75009", "city": "Paris", "country": "FR",
        "vat_number": "FR 44 732829320", "siren": "732829320", "siret": "73282932000017",
        "accent_colour": "#1f4e79", "invoice_footer": "RCS Paris 732 829 320",
        "support_email": "billing@demo.example",
    }
    return {**data, **changes}


def errors(response) -> str:
    assert response.status_code == 200  # the form again, with its errors
    form_errors = response.context["adminform"].form.errors.values()
    return " ".join(message for messages in form_errors for message in messages)


# --- the branding screen ----------------------------------------------------------------


def test_finance_admin_sets_the_branding_with_a_logo(as_member):
    client = as_member("Finance admin")
    Branding.load()

    response = client.post(BRANDING_URL, form(logo=image(), icon=image(size=(32, 32))))

    assert response.status_code == 302
    branding = Branding.load()
    assert (branding.company_name, branding.vat_number) == ("Demo Billing SAS", "FR44732829320")
    assert branding.accent_colour == "#1F4E79"
    assert branding.logo.name.startswith("branding/") and branding.logo.size > 0


def test_the_list_opens_the_single_row(admin_client):
    response = admin_client.get(reverse("admin:invoices_branding_changelist"))

    assert response.status_code == 302 and response.url == BRANDING_URL


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"logo": SimpleUploadedFile("logo.png", b"<svg xmlns='http://www.w3.org/2000/svg'/>")},
         "Upload a PNG or JPEG image; this file is not one."),
        ({"logo": image("GIF", name="logo.gif")}, "this file is GIF"),
        ({"icon": image(size=(5000, 10))}, "at most 4000 pixels a side"),
        ({"accent_colour": "blue"}, "Enter a colour as #RRGGBB"),
        ({"siren": "732829321"}, "A SIREN is 9 digits with a valid check digit."),
        ({"siret": "73282932000018"}, "A SIRET is 14 digits with a valid check digit."),
        ({"siret": "35600000000048"}, "A SIRET starts with the company's SIREN."),
        ({"vat_number": "FR00732829320"}, "Enter an EU VAT number"),
        ({"country": "fr"}, "Two capital letters"),
    ],
)
def test_bad_branding_gets_a_clear_error_and_changes_nothing(admin_client, changes, message):
    Branding.load()

    response = admin_client.post(BRANDING_URL, form(**changes))

    assert message in errors(response)
    assert Branding.load().company_name == ""


def test_a_logo_over_one_megabyte_is_refused(admin_client):
    Branding.load()
    big = SimpleUploadedFile("logo.png", image().read() + b"\0" * (1024 * 1024))

    response = admin_client.post(BRANDING_URL, form(logo=big))

    assert "the limit is 1024 KB" in errors(response)
    assert not Branding.load().logo


def test_saving_the_branding_when_its_logo_left_storage_still_works(admin_client):
    Branding.load()
    admin_client.post(BRANDING_URL, form(logo=image()))
    branding = Branding.load()
    branding.logo.storage.delete(branding.logo.name)

    page = admin_client.get(BRANDING_URL)
    response = admin_client.post(BRANDING_URL, form(company_name="Renamed SAS"))

    assert page.status_code == 200
    assert response.status_code == 302 and Branding.load().company_name == "Renamed SAS"


@pytest.mark.parametrize("group", ["Collections agent", "Auditor"])
def test_other_staff_read_the_branding_but_cannot_change_it(as_member, group):
    client = as_member(group)
    Branding.load()

    page = client.get(BRANDING_URL)
    response = client.post(BRANDING_URL, form())

    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    assert response.status_code == 403
    assert Branding.load().company_name == ""


# --- PDF buttons --------------------------------------------------------------------------


def test_a_draft_page_previews_its_pdf(admin_client):
    draft = make_draft(lines=((2, 1500),))
    page = admin_client.get(reverse("admin:invoices_invoice_change", args=[draft.pk]))
    url = reverse("admin:invoices_invoice_pdf", args=[draft.pk])

    response = admin_client.get(url)

    assert "Preview PDF" in page.content.decode() and url in page.content.decode()
    assert response["Content-Type"] == "application/pdf"
    assert "Draft invoice" in pdf_text(response.content)
    assert not Document.objects.exists()


def test_a_finalized_invoice_downloads_its_stored_pdf(as_member, monkeypatch):
    client = as_member("Auditor")
    invoice = make_open()
    render_pending()
    monkeypatch.setattr(render, "pdf_write", pytest.fail)  # served, not rendered

    page = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    response = client.get(reverse("admin:invoices_invoice_pdf", args=[invoice.pk]))

    assert "Download PDF" in page.content.decode()
    assert f"Invoice {invoice.number}" in pdf_text(response.content)
    assert invoice.number in response["Content-Disposition"]


def test_a_failed_rendering_is_shown_to_staff_not_a_server_error(admin_client, monkeypatch):
    invoice = make_open()
    monkeypatch.setattr(render, "pdf_write", lambda *a, **k: 1 / 0)
    render_pending()

    response = admin_client.get(
        reverse("admin:invoices_invoice_pdf", args=[invoice.pk]), follow=True
    )
    listing = admin_client.get(reverse("admin:invoices_document_changelist"))

    messages = [str(m) for m in response.context["messages"]]
    assert any("could not be made just now" in m for m in messages)
    assert "ZeroDivisionError" in listing.content.decode()


def test_staff_retry_a_failed_rendering(admin_client, monkeypatch):
    make_open()
    monkeypatch.setattr(render, "pdf_write", lambda *a, **k: 1 / 0)
    render_pending()
    monkeypatch.undo()
    document = Document.objects.get()

    admin_client.post(reverse("admin:invoices_document_changelist"),
                      {"action": "retry_selected", "_selected_action": [document.pk]})

    assert render_pending() == {"rendered": 1, "failed": 0}


def test_credit_note_and_receipt_pdfs_from_their_pages(admin_client):
    invoice = make_open(make_customer(), lines=((1, 10000),))
    note = credit_note_create(invoice, lines=[CreditLine(amount=1000)], now=NOW, actor=STAFF)
    payment = invoice_record_payment(invoice, amount=9000, method="cheque", now=NOW, actor=STAFF)

    note_page = admin_client.get(reverse("admin:invoices_creditnote_change", args=[note.pk]))
    note_pdf = admin_client.get(reverse("admin:invoices_creditnote_pdf", args=[note.pk]))
    receipt = admin_client.get(reverse("admin:invoices_payment_receipt", args=[payment.pk]))

    assert "Download PDF" in note_page.content.decode()
    assert f"Credit note {note.number}" in pdf_text(note_pdf.content)
    assert "Amount paid €90.00" in pdf_text(receipt.content)


def test_a_stored_pdf_gone_from_storage_is_a_clear_message(admin_client):
    invoice = make_open()
    render_pending()
    document = Document.objects.get()
    document.file.storage.delete(document.file.name)

    response = admin_client.get(
        reverse("admin:invoices_document_download", args=[document.pk]), follow=True
    )

    assert response.status_code == 200
    assert any("missing from storage" in str(m) for m in response.context["messages"])
    assert invoice.number in response.content.decode()
