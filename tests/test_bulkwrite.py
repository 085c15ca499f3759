"""The sweeps' bulk writer: rows_insert and rows_update write, below COPY_FROM rows with
the plain statements and from it (PostgreSQL) through COPY, exactly what bulk_create and
bulk_update would, and leave nothing behind when the transaction fails."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils.translation import gettext_lazy

from automations.notifications.models import OutboxMessage
from automations.notifications.outbox import outbox_message
from invoices.bulkwrite import COPY_FROM, rows_insert, rows_update
from invoices.models import Invoice, Payment

from .factories import NOW, make_customer, make_open

pytestmark = pytest.mark.django_db(transaction=True)

SIZES = [3, COPY_FROM, 130]


def _payments(invoice, count):
    return [
        Payment(
            invoice=invoice,
            amount=100 + n,
            currency="EUR",
            # A Choices member and a lazy translation: not plain str, adapted by Django.
            method=Payment.Method.CARD if n % 2 else "bank_transfer",
            reference=gettext_lazy("Card") if n % 3 == 0 else f"réf {n} — 😀",
            received_at=NOW + timedelta(minutes=n // 10),
            recorded_by="sweep",
            created_at=NOW,
        )
        for n in range(count)
    ]


@pytest.mark.parametrize("count", SIZES)
def test_inserted_rows_read_back_as_built_with_ascending_ids(count):
    invoice = make_open(make_customer())
    built = _payments(invoice, count)

    saved = rows_insert(Payment, built)

    assert saved == built
    ids = [payment.pk for payment in saved]
    assert None not in ids and ids == sorted(ids) and len(set(ids)) == count
    assert all(not payment._state.adding for payment in saved)
    rows = {row.pk: row for row in Payment.objects.filter(pk__in=ids)}
    for n, pk in enumerate(ids):
        row = rows[pk]
        assert (row.invoice_id, row.amount, row.currency) == (invoice.pk, 100 + n, "EUR")
        assert row.method == ("card" if n % 2 else "bank_transfer")
        assert row.reference == ("Card" if n % 3 == 0 else f"réf {n} — 😀")
        assert row.received_at == NOW + timedelta(minutes=n // 10)


@pytest.mark.parametrize("count", SIZES)
def test_conflicting_rows_are_left_out_and_the_existing_ones_untouched(count):
    customer = make_customer()
    kept = outbox_message("receipt:1", kind="receipt", now=NOW, customer_id=customer.pk,
                          context={"first": True})
    kept.save()
    messages = [
        outbox_message(
            f"receipt:{n}", kind="receipt", now=NOW, customer_id=customer.pk,
            to=[f"a{n}@example.com"], context={"n": n, "nested": [1, None, "é"]},
            attachments=[{"kind": "invoice", "id": n}],
        )
        for n in range(count + 1)
    ]

    rows_insert(OutboxMessage, messages, ignore_conflicts=True)

    rows = {row.key: row for row in OutboxMessage.objects.all()}
    assert len(rows) == count + 1
    assert rows["receipt:1"].context == {"first": True}
    for n in (0, *range(2, count + 1)):
        row = rows[f"receipt:{n}"]
        assert row.context == {"n": n, "nested": [1, None, "é"]}
        assert row.to == [f"a{n}@example.com"]
        assert row.attachments == [{"kind": "invoice", "id": n}]
        assert (row.status, row.attempts, row.next_attempt_at) == ("pending", 0, NOW)


@pytest.mark.parametrize("count", SIZES)
def test_updated_rows_take_each_objects_own_values_twice_in_one_transaction(count):
    customer = make_customer()
    invoices = [make_open(customer) for _ in range(count)]
    untouched = make_open(customer)

    with transaction.atomic():
        for invoice_number, invoice in enumerate(invoices):
            invoice.next_payment_attempt = NOW + timedelta(hours=invoice_number)
            invoice.attempt_count = invoice_number
            invoice.last_payment_error = gettext_lazy("Card")
        rows_update(Invoice, invoices, ["next_payment_attempt", "attempt_count",
                                        "last_payment_error"])
        # The same columns again in the same transaction: the staging rows of the first
        # call are gone.
        for invoice in invoices[::2]:
            invoice.next_payment_attempt = None
        rows_update(Invoice, invoices[::2], ["next_payment_attempt", "attempt_count",
                                             "last_payment_error"])

    rows = {row.pk: row for row in Invoice.objects.filter(customer=customer)}
    for n, invoice in enumerate(invoices):
        row = rows[invoice.pk]
        expected = None if n % 2 == 0 else NOW + timedelta(hours=n)
        assert (row.next_payment_attempt, row.attempt_count) == (expected, n)
        assert row.last_payment_error == "Card"
    assert rows[untouched.pk].next_payment_attempt == untouched.next_payment_attempt
    assert rows[untouched.pk].last_payment_error == ""


@pytest.mark.parametrize("count", SIZES)
def test_a_broken_row_writes_nothing(count):
    invoice = make_open(make_customer())
    built = _payments(invoice, count)
    built[-1].invoice_id = invoice.pk + 10_000  # no such invoice

    with pytest.raises(IntegrityError), transaction.atomic():
        rows_insert(Payment, built)

    assert not Payment.objects.exists()
    # The connection is usable afterwards, and the next batch is written.
    assert len(rows_insert(Payment, _payments(invoice, count))) == count
    assert Payment.objects.count() == count


def test_a_model_without_an_automatic_key_goes_through_bulk_create():
    from automations.notifications.models import NotificationSchedule

    customer = make_customer()
    invoices = [make_open(customer) for _ in range(COPY_FROM)]
    NotificationSchedule.objects.all().delete()  # finalizing wrote them: written again here
    rows = [NotificationSchedule(invoice=invoice, next_reminder_at=NOW) for invoice in invoices]

    rows_insert(NotificationSchedule, rows)

    stored = NotificationSchedule.objects.filter(invoice__customer=customer)
    assert sorted(stored.values_list("invoice_id", flat=True)) == [i.pk for i in invoices]
