"""Stored documents: requested by events, rendered by the sweep or a task, served from
storage, in the customer's locale, and never a failure for the door that caused them."""

from datetime import date, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core.files.base import ContentFile
from django.db import connection
from django.test.utils import CaptureQueriesContext

from billing_site.celery import app as celery_app
from customers.errors import DomainError
from invoices.bulk import invoices_finalize_bulk
from invoices.credit_notes import CreditLine, credit_note_create
from invoices.documents import render, services
from invoices.documents.models import Branding, Document
from invoices.documents.services import (
    document_ensure,
    document_get,
    documents_render_due,
    documents_request,
    draft_preview_pdf,
)
from invoices.events import event_build
from invoices.models import Invoice, Payment
from invoices.services import (
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_record_payment,
    invoice_void,
)
from invoices.sweeps import finalize_due_drafts

from .factories import NOW, STAFF, make_customer, make_draft, make_open, make_tax_rate
from .pdfs import (  # noqa: F401  (media: fixture)
    media,
    pdf_pages,
    pdf_text,
    render_pending,
    stored,
)

D = Document.Status
pytestmark = pytest.mark.usefixtures("media")


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def branding():
    Branding.objects.filter(pk=Branding.load().pk).update(
        company_name="Demo Billing SAS", address_line1="8 rue du Faubourg Montmartre",
        postal_code="75009", city="Paris", vat_number="FR44732829320", siren="732829320",
        invoice_footer="RCS Paris 732 829 320",
    )
    return Branding.load()


def french_invoice(**fields):
    customer = make_customer(name="Acme SARL", preferred_locale="fr", timezone="Europe/Paris")
    rate = make_tax_rate("20", name="TVA")
    return make_open(customer, lines=((1, 102880),), tax_rates=[rate], **fields)


def latest(kind, obj) -> bytes:
    return stored(document_get(kind, obj))


# --- requested by events, in the same transaction ---------------------------------------


def test_finalizing_requests_the_invoice_pdf_without_rendering_it():
    invoice = make_open()

    document = Document.objects.get()

    assert (document.kind, document.number) == ("invoice", invoice.number)
    assert document.status == D.PENDING
    assert document.issued_at == invoice.finalized_at
    assert document_get("invoice", invoice) is None


def test_the_sweep_renders_the_pdf_and_it_is_then_served_from_storage(monkeypatch, branding):
    invoice = make_open(make_customer(country="FR"), lines=((3, 12345),))

    assert render_pending() == {"rendered": 1, "failed": 0}

    document = document_get("invoice", invoice)
    text = pdf_text(stored(document))
    assert f"Invoice {invoice.number}" in text
    assert "Amount due €370.35" in text
    assert document.facturx and document.shows_status == "open"
    # Serving it again renders nothing.
    monkeypatch.setattr(render, "pdf_write", pytest.fail)
    assert document_ensure("invoice", invoice) == document


def test_french_invoice_amounts_and_dates_are_written_the_french_way(branding):
    invoice = french_invoice()
    render_pending()

    text = pdf_text(latest("invoice", invoice))

    assert f"Facture {invoice.number}" in text
    assert "1 234,56 €" in text  # 1 028,80 € + TVA 20 % = 1 234,56 €
    assert "TVA 20 % sur 1 028,80 €" in text
    assert "2 mars 2026" in text
    assert "Montant dû" in text


def test_a_french_invoice_says_everything_in_french(branding):
    # A French seller: the late-payment terms are the product's, in the customer's language.
    Branding.objects.filter(pk=branding.pk).update(country="FR")
    customer = make_customer(
        name="Acme SARL", preferred_locale="fr", timezone="Europe/Paris", country="GB",
        address_line1="1 Bishopsgate", postal_code="EC2N 3AR", city="London",
    )
    invoice = make_open(customer, lines=((1, 259000),), due_date=date(2026, 12, 29))
    render_pending()

    text = pdf_text(latest("invoice", invoice))

    assert "2 590,00 € dû le 29 décembre 2026" in text
    # The address in the order of its country, the country named in French.
    assert "1 Bishopsgate LONDON EC2N 3AR ROYAUME-UNI" in text
    assert "Retard de paiement" in text and "40,00 €" in text
    assert "Late payment" not in text


def test_brazilian_invoice_in_portuguese():
    customer = make_customer(currency="BRL", preferred_locale="pt-BR", timezone="America/Sao_Paulo")
    invoice = make_open(customer, lines=((1, 123456),))
    render_pending()

    text = pdf_text(latest("invoice", invoice))

    assert f"Fatura {invoice.number}" in text
    assert "R$ 1.234,56" in text
    assert "2 de março de 2026" in text


def test_a_locale_that_does_not_exist_reads_english():
    invoice = make_open(lines=((1, 5000),))
    Invoice.objects.filter(pk=invoice.pk).update(
        customer_details={**invoice.customer_details, "locale": "tlh", "timezone": "Mars/Olympus"}
    )

    assert render_pending() == {"rendered": 1, "failed": 0}
    assert "Amount due €50.00" in pdf_text(latest("invoice", invoice))


def test_lines_taxes_discounts_balance_and_terms_are_printed():
    customer = make_customer()
    rate = make_tax_rate("20")
    invoice = make_open(
        customer, lines=((2, 50000),), tax_rates=[rate], discount_percent=Decimal(10),
        due_date=(NOW + timedelta(days=30)).date(),
    )
    render_pending()

    text = pdf_text(latest("invoice", invoice))

    assert "Consulting Discount €100.00 2 €500.00 VAT 20% €1,000.00" in text
    assert "Subtotal €1,000.00 Discounts -€100.00 Total excluding tax €900.00" in text
    assert "VAT 20% on €900.00 €180.00" in text
    assert "Total €1,080.00" in text
    assert "Payment due by April 1, 2026." in text


# --- statuses: a new version when paid or voided -------------------------------------


def test_a_paid_invoice_gets_a_new_version_that_shows_it_and_a_receipt():
    invoice = make_open(lines=((1, 10000),))
    render_pending()
    first = document_get("invoice", invoice)

    payment = invoice_record_payment(
        invoice, amount=10000, method="bank_transfer", now=NOW, actor=STAFF, reference="TR-9"
    )
    assert render_pending() == {"rendered": 2, "failed": 0}

    paid = document_get("invoice", invoice)
    assert paid.pk != first.pk and paid.shows_status == "paid"
    assert "PAID" in pdf_text(stored(paid)).upper()
    assert "Paid on March 2, 2026." in pdf_text(stored(paid))
    assert "Amount due €0.00" in pdf_text(stored(paid))
    assert "Amount due €100.00" in pdf_text(stored(first))  # the version sent stays
    receipt = pdf_text(latest("receipt", payment))
    assert f"Receipt for invoice {invoice.number}" in receipt
    assert "Amount paid €100.00" in receipt and "Bank transfer" in receipt and "TR-9" in receipt


def test_an_open_invoice_links_to_its_page_and_a_paid_one_does_not(settings):
    settings.SITE_URL = "https://billing.example.com"
    invoice = make_open(lines=((1, 10000),))
    render_pending()
    open_text = pdf_text(latest("invoice", invoice))

    invoice_record_payment(invoice, amount=10000, method="cheque", now=NOW, actor=STAFF)
    render_pending()

    # A short line to read (the link and the QR code carry the whole address).
    assert "Pay or download this invoice online: billing.example.com/i/" in open_text
    assert "or scan the code with your phone." in open_text
    assert "billing.example.com/i/" not in pdf_text(latest("invoice", invoice))


def test_every_page_has_its_number_and_page_count_and_the_headline_comes_first(settings):
    invoice = make_open(lines=[(1, 1000)] * 60)
    render_pending()
    pages = pdf_pages(latest("invoice", invoice))

    assert len(pages) >= 2
    for number, text in enumerate(pages, 1):
        assert f"{number} / {len(pages)}" in text and invoice.number in text
    assert "€600.00 due on" in pages[0]


def test_a_void_invoice_shows_it():
    invoice = make_open()
    invoice_void(invoice, now=NOW, actor=STAFF)
    render_pending()

    text = pdf_text(latest("invoice", invoice))

    assert "VOID" in text.upper() and "nothing is due" in text


def test_a_write_off_leaves_the_customer_copy_as_issued():
    # Uncollectible is the business's book-keeping: the customer still owes the invoice
    # and can still pay it, so their PDF neither changes nor says "uncollectible".
    invoice = make_open(lines=((1, 10000),))
    render_pending()
    issued = document_get("invoice", invoice)

    invoice_mark_uncollectible(invoice, now=NOW, actor=STAFF)

    assert render_pending() == {"rendered": 0, "failed": 0}
    assert document_get("invoice", invoice).pk == issued.pk
    text = pdf_text(latest("invoice", invoice))
    assert "UNCOLLECTIBLE" not in text.upper() and "Amount due €100.00" in text


def test_events_of_one_transaction_ask_for_one_rendering():
    # Finalized and paid at once (nothing due): one pending row renders the final state.
    customer = make_customer()
    draft = make_draft(customer, lines=((1, 0),))
    invoice_finalize(draft, now=NOW, actor=STAFF)

    assert Document.objects.filter(kind="invoice").count() == 1


def test_credit_note_pdf():
    invoice = make_open(lines=((1, 10000),))
    note = credit_note_create(
        invoice, lines=[CreditLine(amount=2500, description="Goodwill")], now=NOW, actor=STAFF,
        reason="order_change",
    )
    render_pending()

    text = pdf_text(latest("credit_note", note))

    assert f"Credit note {note.number}" in text
    assert "Goodwill €25.00" in text and "Total credited €25.00" in text
    assert "Credited against the invoice €25.00" in text
    assert invoice.number in text


def test_bulk_finalization_requests_every_pdf_in_a_few_queries():
    customer = make_customer()
    for _ in range(30):
        make_draft(customer, auto_advance=True)

    with CaptureQueriesContext(connection) as queries:
        finalize_due_drafts(now=NOW + timedelta(hours=2))

    assert Document.objects.filter(status=D.PENDING).count() == 30
    document_queries = [q for q in queries if "invoices_document" in q["sql"]]
    assert len(document_queries) <= 3  # pending check and one INSERT, whatever the count


def test_documents_are_requested_in_two_queries_and_once_while_pending():
    DUE = NOW.date() + timedelta(days=30)
    # given receipts asked for by the events of payments, one of them pending already
    invoices = [make_open(due_date=DUE, lines=((1, 10000),)) for _ in range(3)]
    for invoice in invoices:
        invoice_record_payment(invoice, amount=1000, method="bank_transfer", now=NOW,
                               actor=STAFF)
    payments = list(Payment.objects.filter(invoice__in=invoices).order_by("pk"))
    Document.objects.filter(payment=payments[0]).delete()
    Document.objects.filter(payment=payments[1]).update(status=D.RENDERED)
    events = [event_build("invoice.payment_succeeded", now=NOW, actor=STAFF, invoice=p.invoice,
                          data={"payment": p.pk}) for p in payments]

    with CaptureQueriesContext(connection) as queries:
        documents_request(events)

    # then the payments are read with whether a receipt is pending, and the rows inserted
    assert len(queries) == 2
    assert sorted(Document.objects.filter(kind="receipt", status=D.PENDING)
                  .values_list("payment_id", flat=True)) == [p.pk for p in payments]
    assert Document.objects.filter(payment=payments[2]).count() == 1


# --- failures: recorded, retried with backoff, never raised into the door -------------


def test_a_failed_rendering_is_recorded_and_retried_later(monkeypatch):
    invoice = make_open()
    monkeypatch.setattr(render, "pdf_write", lambda *a, **k: 1 / 0)

    assert render_pending(NOW) == {"rendered": 0, "failed": 1}
    document = Document.objects.get()
    assert document.status == D.FAILED and "ZeroDivisionError" in document.error
    assert document.next_attempt_at == NOW + timedelta(minutes=1)
    assert render_pending(NOW + timedelta(seconds=30)) == {"rendered": 0, "failed": 0}

    monkeypatch.undo()
    assert render_pending(NOW + timedelta(minutes=1)) == {"rendered": 1, "failed": 0}
    assert document_get("invoice", invoice).attempts == 2


def test_renderings_stop_being_retried_after_the_last_attempt(monkeypatch):
    make_open()
    monkeypatch.setattr(render, "pdf_write", lambda *a, **k: 1 / 0)

    later = NOW
    for _ in range(services.MAX_ATTEMPTS):
        render_pending(later)
        later += timedelta(days=1)

    document = Document.objects.get()
    assert (document.status, document.attempts, document.next_attempt_at) == (D.FAILED, 5, None)
    assert render_pending(later) == {"rendered": 0, "failed": 0}


def test_ensure_raises_a_clear_error_when_rendering_fails(monkeypatch):
    invoice = make_open()
    monkeypatch.setattr(render, "pdf_write", lambda *a, **k: 1 / 0)

    with pytest.raises(DomainError, match="could not be made just now"):
        document_ensure("invoice", invoice)


def test_ensure_renders_a_missing_document_at_once():
    invoice = make_open()
    Document.objects.all().delete()

    document = document_ensure("invoice", invoice)

    assert document.status == D.RENDERED and invoice.number in pdf_text(stored(document))


def test_a_draft_has_a_preview_but_no_stored_pdf():
    draft = make_draft(lines=((2, 1500),))

    preview = pdf_text(draft_preview_pdf(draft))

    assert "Draft invoice" in preview and "not an invoice" in preview
    assert "€30.00" in preview
    assert not Document.objects.exists()
    with pytest.raises(DomainError, match="no PDF until it is finalized"):
        document_ensure("invoice", draft)
    with pytest.raises(DomainError, match="Only drafts"):
        draft_preview_pdf(make_open())


def test_a_logo_deleted_from_storage_leaves_the_pdf_without_logo(branding):
    branding.logo.save("logo.png", ContentFile(b"\x89PNG not really"), save=True)
    branding.logo.storage.delete(branding.logo.name)
    invoice = make_open()

    assert render_pending() == {"rendered": 1, "failed": 0}
    assert "Demo Billing SAS" in pdf_text(latest("invoice", invoice))


def test_the_stored_logo_is_printed(branding):
    png = (
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00"
        b"\x00\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\xff\xff?\x00\x05\xfe\x02\xfe\xa7"
        b"\x35\x81\x84\x00\x00\x00\x00IEND\xaeB`\x82"
    )
    branding.logo.save("logo.png", ContentFile(png), save=True)
    invoice = make_open()
    render_pending()

    assert b"/Subtype /Image" in latest("invoice", invoice)


# --- after commit: a task, or the sweep when the broker is away -----------------------


def test_after_commit_a_task_renders_the_new_documents(django_capture_on_commit_callbacks,
                                                       monkeypatch):
    monkeypatch.setitem(celery_app.conf, "task_always_eager", True)

    with django_capture_on_commit_callbacks(execute=True):
        invoice = make_open()

    assert document_get("invoice", invoice) is not None


def test_an_unreachable_broker_leaves_the_work_to_the_sweep(django_capture_on_commit_callbacks,
                                                           monkeypatch):
    from invoices.documents import tasks

    def broker_down(*args, **kwargs):
        raise ConnectionRefusedError("broker down")

    monkeypatch.setattr(tasks.render_documents_task, "apply_async", broker_down)

    with django_capture_on_commit_callbacks(execute=True):
        invoice = make_open()  # no error reaches the door

    assert Document.objects.get().status == D.PENDING
    assert render_pending() == {"rendered": 1, "failed": 0}
    assert document_get("invoice", invoice) is not None


def test_a_bulk_change_sends_a_bounded_number_of_render_tasks(
    django_capture_on_commit_callbacks, monkeypatch
):
    # Thousands of documents from one commit cost TASKS_PER_COMMIT broker calls; the
    # beat sweep renders the rest.
    from invoices.documents import tasks

    sent = []
    monkeypatch.setattr(
        tasks.render_documents_task, "apply_async", lambda args, **kw: sent.append(args[0])
    )
    customer = make_customer()
    drafts = [make_draft(customer) for _ in range(services.TASK_CHUNK * services.TASKS_PER_COMMIT
                                                     + 5)]
    with django_capture_on_commit_callbacks(execute=True):
        invoices_finalize_bulk([d.pk for d in drafts], now=NOW, actor=STAFF)

    pending = set(Document.objects.filter(status=D.PENDING).values_list("pk", flat=True))
    assert len(pending) == len(drafts)
    assert len(sent) == services.TASKS_PER_COMMIT
    assert all(len(ids) == services.TASK_CHUNK for ids in sent)
    assert {pk for ids in sent for pk in ids} < pending  # the rest is the sweep's


def test_the_sweep_is_on_the_beat_schedule():
    from automations.schedule import BEAT_SCHEDULE

    assert {"task": "invoices.render_pending_documents", "every_seconds": 60} in (
        BEAT_SCHEDULE.values()
    )


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL row locks")
@pytest.mark.django_db(transaction=True)
def test_a_document_locked_by_one_worker_is_skipped_by_another():
    import threading

    make_open(), make_open()
    first, second = Document.objects.order_by("pk")
    locked, release = threading.Event(), threading.Event()

    def worker_holding_the_first():
        from django.db import transaction

        with transaction.atomic():
            Document.objects.select_for_update().get(pk=first.pk)
            locked.set()
            release.wait(timeout=30)
        connection.close()

    thread = threading.Thread(target=worker_holding_the_first)
    thread.start()
    locked.wait(timeout=30)
    try:
        counts = documents_render_due(now=NOW)
    finally:
        release.set()
        thread.join()

    assert counts == {"rendered": 1, "failed": 0}
    assert Document.objects.get(pk=first.pk).status == D.PENDING
    assert Document.objects.get(pk=second.pk).status == D.RENDERED
