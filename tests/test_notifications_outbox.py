"""The outbox: which changes queue which emails (in their transaction, once each), and
what the customer receives (locmem backend): content, language, links, attachments,
Message-ID; bad input fails one row clearly and the rest of the queue keeps flowing."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automations.models import NotificationSettings, OutboxMessage
from automations.notifications import delivery
from automations.notifications.delivery import MAX_ATTEMPTS, outbox_drain, outbox_requeue
from automations.notifications.documents import AttachmentError
from automations.notifications.outbox import notify
from automations.notifications.triggers import on_events
from customers.clock_due import one_transaction
from invoices.credit_notes import CreditLine, credit_note_create
from invoices.events import event_build, event_record
from invoices.models import Event
from invoices.services import invoice_finalize, invoice_record_payment
from invoices.sweeps import finalize_due_drafts

from .factories import NOW, STAFF, make_customer, make_draft, make_open
from .notify_support import COLLECTION, keys, payment_failed

ST = OutboxMessage.Status
DUE = date(2026, 3, 31)
pytestmark = pytest.mark.usefixtures("pdfs")


def drain(now=NOW):
    return outbox_drain(now=now)


def row(key):
    return OutboxMessage.objects.get(key=key)


# --- what gets queued ---------------------------------------------------------------


def test_finalizing_a_send_invoice_invoice_queues_its_email_in_the_same_transaction():
    invoice = make_open(due_date=DUE)

    assert keys() == [f"invoice_finalized:{invoice.pk}"]
    queued = row(f"invoice_finalized:{invoice.pk}")
    assert (queued.status, queued.customer_id, queued.invoice_id) == (
        ST.PENDING, invoice.customer_id, invoice.pk)
    assert queued.attachments == [{"kind": "invoice", "id": invoice.pk}]


def test_nothing_is_queued_when_the_change_rolls_back():
    draft = make_draft(due_date=DUE)
    with pytest.raises(RuntimeError), transaction.atomic():
        invoice_finalize(draft, now=NOW, actor=STAFF)
        raise RuntimeError("the caller fails after finalizing")

    assert keys() == []


def test_charge_automatically_invoices_and_the_setting_off_send_no_invoice_email():
    make_open(collection_method="charge_automatically")
    NotificationSettings.objects.update_or_create(pk=1, defaults={"send_finalized_invoices": False})
    make_open(due_date=DUE)

    assert keys() == []


def test_each_payment_gets_a_receipt_and_each_credit_note_its_email():
    invoice = make_open(due_date=DUE, lines=((1, 10000),))
    first = invoice_record_payment(invoice, amount=4000, method="bank_transfer", now=NOW,
                                   actor=STAFF)
    note = credit_note_create(invoice, lines=[CreditLine(amount=1000, description="discount")],
                              now=NOW, actor=STAFF)

    assert keys() == sorted([
        f"invoice_finalized:{invoice.pk}", f"receipt:{first.pk}", f"credit_note:{note.pk}",
    ])
    assert row(f"receipt:{first.pk}").attachments == [{"kind": "receipt", "id": first.pk}]


def test_failed_payments_get_the_soft_or_hard_decline_email_once_per_attempt():
    invoice = make_open(collection_method="charge_automatically")
    payment_failed(invoice, now=NOW, attempt=1, next_attempt=NOW + timedelta(days=3))
    payment_failed(invoice, now=NOW, attempt=2, hard=True, code="lost_card")
    payment_failed(invoice, now=NOW, attempt=2, hard=True, code="lost_card")  # replayed
    event_record("invoice.payment_action_required", now=NOW, actor=COLLECTION, invoice=invoice,
                 data={"attempt": 3, "action_url": "https://bank.example/3ds/abc"})

    kinds = dict(OutboxMessage.objects.values_list("key", "kind"))
    assert kinds == {
        "payment_failed:1": "payment_failed",
        "payment_failed:2": "payment_failed_hard",
        "payment_action_required:3": "payment_action_required",
    }


def test_no_email_about_the_customers_own_tries_on_the_invoice_page():
    invoice = make_open(due_date=DUE)
    for type, data in [
        ("invoice.payment_failed", {"attempt": 5, "decline_code": "insufficient_funds"}),
        ("invoice.payment_action_required", {"attempt": 6, "action_url": "https://x/3ds"}),
    ]:
        event_record(type, now=NOW, actor=COLLECTION, invoice=invoice,
                     data={**data, "source": "customer"})

    assert keys() == [f"invoice_finalized:{invoice.pk}"]


def test_bulk_finalization_queues_one_email_per_invoice():
    drafts = [make_draft(due_date=DUE, now=NOW) for _ in range(5)]

    finalize_due_drafts(now=NOW + timedelta(hours=2))

    assert keys() == sorted(f"invoice_finalized:{d.pk}" for d in drafts)


def test_the_subscriber_costs_no_query_when_no_event_concerns_it(django_assert_num_queries):
    invoice = make_open(due_date=DUE)
    events = [
        event_build("invoice.updated", now=NOW, actor=STAFF, invoice=invoice)
        for _ in range(1000)
    ]

    with django_assert_num_queries(0):
        on_events(events)


# --- what the customer receives -----------------------------------------------------


def test_the_invoice_email_in_french_with_pdf_link_and_a_stable_message_id(settings):
    settings.SITE_URL = "https://billing.example.com"
    customer = make_customer(name="Café Dupont", preferred_locale="fr", email="compta@dupont.fr")
    invoice = make_open(customer, due_date=DUE, lines=((2, 12345),))

    assert drain() == {"sent": 1, "retrying": 0, "failed": 0, "cancelled": 0}

    [sent] = mail.outbox
    assert sent.to == ["compta@dupont.fr"]
    assert sent.subject == f"Facture {invoice.number} de Billing"
    assert "246,90\u00a0€" in sent.body and "31 mars 2026" in sent.body
    assert "https://billing.example.com/i/" in sent.body
    html, mimetype = sent.alternatives[0]
    assert mimetype == "text/html" and "Voir et régler la facture" in html
    assert sent.attachments == [
        (f"invoice-{invoice.pk}.pdf", b"%PDF-1.4 test document\n", "application/pdf")
    ]
    queued = row(f"invoice_finalized:{invoice.pk}")
    assert queued.status == ST.SENT and queued.sent_at == NOW
    assert sent.extra_headers["Message-ID"] == queued.message_id
    assert Event.objects.filter(type="email.sent", invoice=invoice).count() == 1


def test_an_invoice_paid_before_its_email_went_out_is_sent_as_paid_not_due_for_zero():
    # Given an invoice whose email is queued, then paid in full before the outbox runs
    customer = make_customer(preferred_locale="fr", email="compta@dupont.fr")
    invoice = make_open(customer, due_date=DUE, lines=((2, 12345),))
    invoice_record_payment(invoice, amount=24690, method="bank_transfer", now=NOW, actor=STAFF)

    drain()

    # Then the invoice email states its total and that it is paid, never "due" for zero
    [email] = [m for m in mail.outbox if m.subject.startswith("Facture")]
    assert "d'un montant de 246,90\u00a0€ est jointe. Elle est réglée. Merci." in email.body
    assert "0,00" not in email.body.split("\n\n")[1]
    assert "à régler" not in email.body
    html, _mimetype = email.alternatives[0]
    assert "Voir la facture" in html and "régler la facture" not in html


def test_a_sent_email_is_never_sent_again_by_later_drains():
    make_open(due_date=DUE)
    drain()
    drain(NOW + timedelta(days=1))

    assert len(mail.outbox) == 1


def test_failed_payment_email_says_why_in_plain_words_and_when_we_retry():
    customer = make_customer(preferred_locale="pt-BR")
    invoice = make_open(customer, collection_method="charge_automatically")
    payment_failed(invoice, now=NOW, attempt=7, next_attempt=NOW + timedelta(days=3))
    payment_failed(invoice, now=NOW, attempt=8, hard=True, code="stolen_card")

    drain()

    soft, hard = sorted(mail.outbox, key=lambda m: "roubado" in m.body)
    assert "O cartão não tem saldo suficiente." in soft.body
    assert "Tentaremos novamente em 5 de março de 2026" in soft.body
    assert "O cartão foi informado como roubado." in hard.body
    assert "não tentaremos a anterior" in hard.body


def test_the_next_attempt_date_is_the_customers_local_date():
    customer = make_customer(timezone="America/Los_Angeles")
    invoice = make_open(customer, collection_method="charge_automatically")
    payment_failed(invoice, now=NOW, attempt=3,
                   next_attempt=datetime(2026, 3, 5, 3, 0, tzinfo=UTC))  # March 4, 19:00 there

    drain()

    assert "We will try again on March 4, 2026." in mail.outbox[0].body


def test_dunning_emails_of_an_invoice_paid_meanwhile_are_cancelled_not_sent():
    invoice = make_open(collection_method="charge_automatically", lines=((1, 5000),))
    payment_failed(invoice, now=NOW, attempt=1)
    invoice_record_payment(invoice, amount=5000, method="card", now=NOW, actor=STAFF)

    counts = drain()

    assert counts["cancelled"] == 1
    assert row("payment_failed:1").last_error == (
        "The invoice is paid: this email is no longer needed."
    )
    assert [m.subject for m in mail.outbox] == [
        "Receipt for your payment of €50.00"
    ]


def test_notify_queues_an_email_for_other_parts_once_per_key():
    invoice = make_open(collection_method="charge_automatically")
    for _ in range(2):
        notify(f"invoice_link:{invoice.pk}:abc", to=[], template="invoice_link", context={},
               now=NOW, customer=invoice.customer, invoice=invoice)

    drain()

    assert [m.subject for m in mail.outbox] == [f"Your link to invoice {invoice.number}"]


# --- bad input ----------------------------------------------------------------------


def test_a_customer_without_email_fails_its_row_clearly_and_the_queue_keeps_flowing():
    silent = make_open(make_customer(email=""), due_date=DUE)
    broken = make_open(due_date=DUE)
    # imported data, written around the form's validation
    type(broken.customer).objects.filter(pk=broken.customer_id).update(email="not-an-address")
    fine = make_open(due_date=DUE)

    counts = drain()

    assert (counts["sent"], counts["failed"]) == (1, 2)
    assert mail.outbox[0].to == [fine.customer.email]
    assert row(f"invoice_finalized:{silent.pk}").last_error.startswith(
        "The customer has no email address"
    )
    failed = row(f"invoice_finalized:{broken.pk}")
    assert failed.status == ST.FAILED
    assert failed.last_error == (
        "not-an-address is not a valid email address: correct it, then re-send."
    )
    assert Event.objects.filter(type="email.failed", invoice=broken).exists()


def test_fixing_the_address_then_resending_delivers_it():
    invoice = make_open(make_customer(email=""), due_date=DUE)
    drain()
    invoice.customer.email = "fixed@example.com"
    invoice.customer.save(update_fields=["email"])

    outbox_requeue(OutboxMessage.objects.all(), now=NOW)
    drain()

    assert [m.to for m in mail.outbox] == [["fixed@example.com"]]


def test_an_attachment_that_fails_to_render_retries_with_the_reason_then_fails(monkeypatch):
    def broken(spec):
        raise AttachmentError("The invoice PDF could not be rendered: font missing")

    monkeypatch.setattr(delivery, "attachment_load", broken)
    invoice = make_open(due_date=DUE)
    other = make_open(collection_method="charge_automatically")
    payment_failed(other, now=NOW, attempt=1)

    counts = drain()

    queued = row(f"invoice_finalized:{invoice.pk}")
    assert (counts["sent"], counts["retrying"]) == (1, 1)
    assert queued.status == ST.PENDING and "font missing" in queued.last_error
    assert queued.next_attempt_at == NOW + timedelta(minutes=1)
    moment = NOW
    for _attempt in range(MAX_ATTEMPTS - 1):
        moment += timedelta(hours=7)
        drain(moment)
    queued.refresh_from_db()
    assert (queued.status, queued.attempts) == (ST.FAILED, MAX_ATTEMPTS)


def test_a_resent_sent_email_gets_a_new_message_id():
    make_open(due_date=DUE)
    drain()
    outbox_requeue(OutboxMessage.objects.all(), now=NOW)
    drain()

    first, second = mail.outbox
    assert first.extra_headers["Message-ID"] != second.extra_headers["Message-ID"]
    assert OutboxMessage.objects.get().send_count == 2



def test_a_drain_reads_its_receipts_payments_in_a_constant_number_of_queries():
    # given invoices paid in parts: each payment queues a receipt showing the totals
    def paid_in_parts(count):
        for _n in range(count):
            invoice = make_open(due_date=DUE, lines=((1, 10000),))
            for amount in (2500, 4000):
                invoice_record_payment(invoice, amount=amount, method="bank_transfer",
                                       now=NOW, actor=STAFF)

    def queries_of_drain():
        with CaptureQueriesContext(connection) as captured:
            counts = drain()
        return len(captured), counts

    paid_in_parts(1)
    drain()  # what a drain reads once (settings, templates)
    paid_in_parts(1)
    few = queries_of_drain()
    paid_in_parts(6)
    many = queries_of_drain()

    # then 12 receipts cost what 2 do, and no claim finds nothing after the last batch
    assert few == (few[0], {"sent": 3, "retrying": 0, "failed": 0, "cancelled": 0})
    assert many == (few[0], {"sent": 18, "retrying": 0, "failed": 0, "cancelled": 0})
    # and each says what the row alone renders (the amounts read one by one)
    settings = NotificationSettings.load()
    for message in mail.outbox:
        queued = OutboxMessage.objects.get(message_id=message.extra_headers["Message-ID"])
        alone = delivery.row_render(queued, notification_settings=settings)
        assert (message.subject, message.body) == (alone.subject, alone.text)
    assert len(mail.outbox) == 3 + 3 + 18


def test_a_drain_within_a_transaction_leaves_its_commit_to_the_caller():
    # A clock in a simulation drains at each stop within its own transaction: the marks'
    # asynchronous commit is that transaction's to choose (a round trip at each stop).
    make_open(due_date=DUE)  # finalized: its email is queued
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = drain()
    assert counts["sent"] >= 1
    assert not [q for q in captured if "synchronous_commit" in q["sql"]]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="synchronous_commit")
def test_a_drain_in_a_transaction_not_said_to_be_one_keeps_its_own_commit_setting():
    # Production's path is chosen by the flag, not by a transaction being open: a drain
    # in some transaction (here the test's) marks its sends as in production.
    make_open(due_date=DUE)
    with CaptureQueriesContext(connection) as captured:
        counts = drain()
    assert counts["sent"] >= 1
    assert [q for q in captured if "synchronous_commit" in q["sql"]]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="UPDATE ... RETURNING")
def test_a_claim_leases_its_rows_in_one_statement():
    # given two emails due
    for _ in range(2):
        make_open(due_date=DUE)
    due = list(OutboxMessage.objects.filter(status=ST.PENDING).values_list("pk", "attempts"))
    assert len(due) == 2

    with CaptureQueriesContext(connection) as captured:
        rows = delivery.outbox_claim(now=NOW, size=10)

    # then one statement locks and leases them (skipping locked rows), one reads them
    assert len(captured) == 2 and captured[0]["sql"].startswith("UPDATE")
    assert "SKIP LOCKED" in captured[0]["sql"]
    assert sorted(row.pk for row in rows) == sorted(pk for pk, _n in due)
    assert {(row.status, row.next_attempt_at, row.attempts) for row in rows} == {
        (ST.SENDING, NOW + delivery.LEASE, due[0][1] + 1)}
    assert delivery.outbox_claim(now=NOW, size=10) == []  # leased: not due again
