"""Credit notes: what they lower, what they give back, and what they refuse."""

import pytest

from customers.errors import DomainError
from customers.models import BalanceTransaction
from invoices.credit_notes import (
    CreditLine,
    credit_note_create,
    credit_note_void,
    creditable_amount,
)
from invoices.models import CreditNote, Event, Invoice
from invoices.services import (
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_record_payment,
    invoice_void,
)

from .factories import NOW, STAFF, make_customer, make_draft, make_open, make_tax_rate

S = Invoice.Status


def credit(invoice, *amounts, **kwargs):
    lines = [CreditLine(amount=amount) for amount in amounts]
    return credit_note_create(invoice, lines=lines, now=NOW, actor=STAFF, **kwargs)


def credit_line(invoice, amount, line):
    lines = [CreditLine(amount, invoice_line_id=line.pk)]
    return credit_note_create(invoice, lines=lines, now=NOW, actor=STAFF)


def pay(invoice, amount):
    return invoice_record_payment(
        invoice, amount=amount, method="bank_transfer", now=NOW, actor=STAFF
    )


def state(invoice):
    invoice.refresh_from_db()
    invoice.customer.refresh_from_db()
    return (
        invoice.status, invoice.amount_due, invoice.amount_paid, invoice.amount_remaining,
        invoice.pre_payment_credit_notes_amount, invoice.post_payment_credit_notes_amount,
        invoice.credit_notes.count(), invoice.customer.balance,
        invoice.customer.balance_transactions.count(),
    )


@pytest.fixture
def invoice():
    """An open invoice of 100.00 for a customer whose numbers start with INV."""
    return make_open(make_customer(invoice_prefix="INV"), lines=((1, 10000),))


def test_pre_payment_credit_note_lowers_what_is_due(invoice):
    note = credit(invoice, 3000, reason="order_change")

    assert (note.type, note.number, note.amount) == ("pre_payment", "INV-0001-CN-01", 3000)
    assert (note.pre_payment_amount, note.post_payment_amount) == (3000, 0)
    assert (invoice.status, invoice.amount_due, invoice.amount_remaining) == (S.OPEN, 7000, 7000)
    assert creditable_amount(invoice) == 7000
    assert Event.objects.filter(type="credit_note.created", credit_note=note).exists()


def test_fully_crediting_an_open_invoice_marks_it_paid(invoice):
    credit(invoice, 10000, reason="duplicate")

    assert (invoice.status, invoice.amount_remaining, invoice.paid_at) == (S.PAID, 0, NOW)
    paid = Event.objects.get(invoice=invoice, type="invoice.paid")
    assert paid.data["reason"] == "credited"


def test_post_payment_credit_note_split_between_refund_balance_and_out_of_band(invoice):
    pay(invoice, 10000)

    note = credit(invoice, 6000, refund_amount=2000, credit_amount=3000, out_of_band_amount=1000)

    assert note.type == "post_payment"
    assert (note.pre_payment_amount, note.post_payment_amount) == (0, 6000)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.post_payment_credit_notes_amount) == (
        S.PAID, 10000, 6000,
    )
    invoice.customer.refresh_from_db()
    assert invoice.customer.balance == -3000
    row = invoice.customer.balance_transactions.get()
    assert (row.type, row.amount, row.reference) == (
        BalanceTransaction.Type.CREDIT_NOTE, -3000, note.number,
    )


@pytest.mark.parametrize(
    "refund,credit_amount,out_of_band", [(0, 0, 0), (2000, 3000, 0), (7000, 0, 0)]
)
def test_post_payment_split_must_add_up(invoice, refund, credit_amount, out_of_band):
    pay(invoice, 10000)
    before = state(invoice)

    with pytest.raises(DomainError, match="add up"):
        credit(invoice, 6000, refund_amount=refund, credit_amount=credit_amount,
               out_of_band_amount=out_of_band)

    assert state(invoice) == before


def test_mixed_credit_note_on_a_partially_paid_invoice(invoice):
    pay(invoice, 4000)  # 60.00 still due

    note = credit(invoice, 8000, credit_amount=2000)

    assert (note.type, note.pre_payment_amount, note.post_payment_amount) == ("mixed", 6000, 2000)
    assert (invoice.status, invoice.amount_due, invoice.amount_remaining) == (S.PAID, 4000, 0)
    invoice.customer.refresh_from_db()
    assert invoice.customer.balance == -2000


def test_credit_note_lines_are_capped_by_the_invoice_lines():
    # lines of 60.00 and 40.00 at 20 %: 72.00 and 48.00 tax included
    draft = make_draft(lines=((1, 6000), (1, 4000)), tax_rates=[make_tax_rate("20")])
    invoice = invoice_finalize(draft, now=NOW, actor=STAFF)
    first, second = invoice.lines.order_by("position")

    with pytest.raises(DomainError, match="48.00"):
        credit_line(invoice, 4801, second)
    note = credit_line(invoice, 4800, second)
    assert (note.amount, note.tax) == (4800, 800)
    with pytest.raises(DomainError, match="line"):
        credit_line(invoice, 1, second)
    other = make_open()
    with pytest.raises(DomainError, match="not on invoice"):
        credit_line(invoice, 100, other.lines.get())
    assert invoice.credit_notes.count() == 1 and first.credit_note_lines.count() == 0


def test_credit_notes_are_numbered_after_their_invoice(invoice):
    numbers = [credit(invoice, 1000).number, credit(invoice, 1000).number]
    assert numbers == ["INV-0001-CN-01", "INV-0001-CN-02"]


def test_credit_note_void_is_refused_once_the_invoice_is_paid(invoice):
    pay(invoice, 4000)
    note = credit(invoice, 8000, credit_amount=2000)  # 60.00 pre-payment settles it
    before = state(invoice)

    with pytest.raises(DomainError, match="open"):
        credit_note_void(note, now=NOW, actor=STAFF)

    assert state(invoice) == before
    note.refresh_from_db()
    assert note.status == CreditNote.Status.ISSUED


def test_void_credit_note_while_open_gives_everything_back():
    invoice = make_open(lines=((1, 10000),))
    pay(invoice, 4000)
    before = state(invoice)
    note = credit(invoice, 3000)  # pre-payment only: 60.00 due -> 30.00

    credit_note_void(note, now=NOW, actor=STAFF)

    note.refresh_from_db()
    assert (note.status, note.voided_at) == (CreditNote.Status.VOID, NOW)
    after = state(invoice)
    assert after[:6] == before[:6] and after[7] == before[7]  # amounts and balance restored
    assert creditable_amount(invoice) == 10000
    assert Event.objects.filter(type="credit_note.voided", credit_note=note).exists()
    assert credit(invoice, 1000).number.endswith("-CN-02")  # a voided number is not reused


def test_credit_note_with_refund_cannot_be_voided():
    invoice = make_open(lines=((1, 10000),))
    pay(invoice, 5000)
    # 50.00 due; crediting 60.00 pays it: 50.00 pre + 10.00 refunded
    refunded = credit(invoice, 6000, refund_amount=1000)
    assert invoice.status == S.PAID
    with pytest.raises(DomainError):
        credit_note_void(refunded, now=NOW, actor=STAFF)
    refunded.refresh_from_db()
    assert refunded.status == CreditNote.Status.ISSUED


def test_currency_mismatch_is_refused(invoice):
    before = state(invoice)
    with pytest.raises(DomainError, match="USD"):
        credit(invoice, 1000, currency="USD")
    assert state(invoice) == before


def test_exceeding_what_can_be_credited_is_refused_and_changes_nothing(invoice):
    credit(invoice, 4000)
    before = state(invoice)

    with pytest.raises(DomainError, match="At most"):
        credit(invoice, 3000, 3001)

    assert state(invoice) == before
    assert creditable_amount(invoice) == 6000


@pytest.mark.parametrize("amounts", [(0,), (-100,), (10**14,)])
def test_absurd_amounts_are_refused(invoice, amounts):
    before = state(invoice)
    with pytest.raises(DomainError):
        credit(invoice, *amounts)
    with pytest.raises(DomainError):
        credit(invoice, 100, refund_amount=-1)
    assert state(invoice) == before


def test_credit_notes_only_on_open_or_paid_invoices():
    draft = make_draft()
    voided = invoice_void(make_open(), now=NOW, actor=STAFF)
    uncollectible = invoice_mark_uncollectible(make_open(), now=NOW, actor=STAFF)
    for invoice in (draft, voided, uncollectible):
        with pytest.raises(DomainError, match="open or paid"):
            credit(invoice, 100)
        assert invoice.credit_notes.count() == 0


def test_an_invoice_with_issued_credit_notes_cannot_be_voided_until_they_are(invoice):
    note = credit(invoice, 1000)
    with pytest.raises(DomainError, match="credit notes"):
        invoice_void(invoice, now=NOW, actor=STAFF)
    credit_note_void(note, now=NOW, actor=STAFF)
    invoice_void(invoice, now=NOW, actor=STAFF)
    assert invoice.status == S.VOID
