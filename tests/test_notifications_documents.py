"""Emails with their real PDFs (the documents pipeline): the invoice, its receipt and its
credit note arrive attached; a PDF that cannot be rendered leaves a clear error on the
outbox row, is retried, and the rest of the queue keeps flowing."""

from datetime import date, timedelta

import pytest
from django.core import mail

from automations.models import OutboxMessage
from automations.notifications.delivery import outbox_drain
from invoices.credit_notes import CreditLine, credit_note_create
from invoices.documents import render
from invoices.services import invoice_record_payment

from .factories import NOW, STAFF, make_customer, make_open
from .pdfs import media, pdf_text  # noqa: F401  (media: fixture)

pytestmark = pytest.mark.usefixtures("media")
DUE = date(2026, 3, 31)


def attachments_of(subject_start):
    [message] = [m for m in mail.outbox if m.subject.startswith(subject_start)]
    return message.attachments


def test_invoice_receipt_and_credit_note_emails_carry_their_pdfs():
    invoice = make_open(make_customer(name="Acme Labs"), due_date=DUE, lines=((1, 20000),))
    payment = invoice_record_payment(invoice, amount=5000, method="bank_transfer", now=NOW,
                                     actor=STAFF)
    note = credit_note_create(invoice, lines=[CreditLine(amount=1000, description="goodwill")],
                              now=NOW, actor=STAFF)

    assert outbox_drain(now=NOW)["sent"] == 3

    [(name, content, mimetype)] = attachments_of("Invoice ")
    assert (name, mimetype) == (f"{invoice.number}.pdf", "application/pdf")
    assert invoice.number in pdf_text(content)
    [(name, content, _type)] = attachments_of("Receipt ")
    assert name == f"receipt-{invoice.number}-{payment.pk}.pdf" and content.startswith(b"%PDF")
    [(name, content, _type)] = attachments_of("Credit note ")
    assert name == f"{note.number}.pdf" and note.number in pdf_text(content)


def test_a_pdf_that_fails_to_render_is_retried_with_a_clear_error(monkeypatch):
    monkeypatch.setattr(render, "pdf_write", lambda *args, **kwargs: 1 / 0)
    invoice = make_open(due_date=DUE)
    other = make_open(collection_method="charge_automatically")
    OutboxMessage.objects.create(
        key="reminder-without-pdf", kind="reminder_due", customer=other.customer,
        invoice=other, next_attempt_at=NOW, created_at=NOW, context={"offset": 0},
    )

    counts = outbox_drain(now=NOW)

    assert (counts["sent"], counts["retrying"]) == (1, 1)
    row = OutboxMessage.objects.get(invoice=invoice)
    assert row.status == "pending" and row.next_attempt_at == NOW + timedelta(minutes=1)
    assert row.last_error == (
        f"The {invoice.number}.pdf PDF could not be rendered: The PDF of {invoice.number} "
        "could not be made just now; please try again in a few minutes."
    )

    monkeypatch.undo()
    assert outbox_drain(now=NOW + timedelta(minutes=1))["sent"] == 1
    row.refresh_from_db()
    assert row.status == "sent" and row.attempts == 2
