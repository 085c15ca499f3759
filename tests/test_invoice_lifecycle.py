from datetime import date, timedelta

import pytest

from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from invoices.models import Event, Invoice, InvoicingSettings
from invoices.services import (
    invoice_delete,
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_record_payment,
    invoice_revise,
    invoice_update,
    invoice_void,
)
from invoices.transitions import ALLOWED, DELETED, InvalidTransition, check_transition

from .factories import NOW, STAFF, make_customer, make_draft, make_open, make_tax_rate

S = Invoice.Status
ALL_TARGETS = [S.OPEN, S.PAID, S.VOID, S.UNCOLLECTIBLE, DELETED]


def events(invoice):
    return list(Event.objects.filter(invoice=invoice).order_by("id").values_list("type", flat=True))


@pytest.mark.parametrize(
    "current,target",
    [(c, t) for c in ALLOWED for t in ALL_TARGETS if t not in ALLOWED[c]],
)
def test_every_forbidden_transition_is_refused(current, target):
    with pytest.raises(InvalidTransition):
        check_transition(current, target)


def test_finalize_numbers_snapshots_and_opens():
    customer = make_customer(name="Acme", invoice_prefix="ACME", address_line1="1 rue de Rivoli")
    draft = make_draft(customer, lines=((2, 5000),), tax_rates=[make_tax_rate("20")])
    assert draft.total == 12000 and draft.number is None

    invoice = invoice_finalize(draft, now=NOW, actor=STAFF)

    invoice.refresh_from_db()
    assert invoice.status == S.OPEN
    assert invoice.number == "ACME-0001"
    assert invoice.finalized_at == NOW
    assert invoice.due_date == date(2026, 4, 1)  # default terms: 30 days
    assert invoice.customer_details["address"]["line1"] == "1 rue de Rivoli"
    assert invoice.hosted_token_hash
    assert (invoice.amount_due, invoice.amount_remaining) == (12000, 12000)
    assert events(invoice) == ["invoice.created", "invoice.finalized"]
    assert Event.objects.get(type="invoice.finalized").actor_label == "alice"


def test_numbers_are_per_customer_then_account_wide():
    acme, globex = make_customer(invoice_prefix="ACME"), make_customer(invoice_prefix="GLOBEX")
    assert [make_open(acme).number, make_open(acme).number, make_open(globex).number] == [
        "ACME-0001",
        "ACME-0002",
        "GLOBEX-0001",
    ]
    InvoicingSettings.objects.filter(pk=1).update(numbering="account", account_prefix="INV")
    assert [make_open(acme).number, make_open(globex).number] == ["INV-0001", "INV-0002"]


def test_deleting_a_draft_leaves_no_gap():
    customer = make_customer(invoice_prefix="GAP")
    make_open(customer)
    invoice_delete(make_draft(customer), now=NOW, actor=STAFF)
    assert make_open(customer).number == "GAP-0002"
    assert Event.objects.filter(type="invoice.deleted", customer=customer).exists()


def test_credit_balance_is_applied_at_finalization_and_returned_on_void():
    customer = make_customer()
    balance_transaction_create(
        customer=customer, amount=-3000, type="adjustment", now=NOW, actor=STAFF
    )
    invoice = make_open(customer, lines=((1, 10000),))
    assert (invoice.starting_balance, invoice.ending_balance, invoice.amount_due) == (
        -3000,
        0,
        7000,
    )
    customer.refresh_from_db()
    assert customer.balance == 0

    invoice_void(invoice, now=NOW, actor=STAFF)
    customer.refresh_from_db()
    assert customer.balance == -3000
    assert invoice.status == S.VOID and invoice.auto_advance is False


def test_credit_larger_than_total_pays_the_invoice_at_finalization():
    customer = make_customer()
    balance_transaction_create(
        customer=customer, amount=-50000, type="adjustment", now=NOW, actor=STAFF
    )
    invoice = make_open(customer, lines=((1, 10000),))
    assert invoice.status == S.PAID and invoice.amount_due == 0
    customer.refresh_from_db()
    assert customer.balance == -40000


def test_partial_then_full_payment():
    invoice = make_open(lines=((1, 10000),))
    invoice_record_payment(invoice, amount=4000, method="bank_transfer", now=NOW, actor=STAFF)
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == (S.OPEN, 4000, 6000)
    invoice_record_payment(invoice, amount=6000, method="cheque", now=NOW, actor=STAFF)
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_remaining, invoice.paid_at) == (S.PAID, 0, NOW)
    assert events(invoice)[-3:] == [
        "invoice.payment_succeeded",
        "invoice.payment_succeeded",
        "invoice.paid",
    ]


def test_overpayment_is_refused_unless_credited_to_balance():
    invoice = make_open(lines=((1, 10000),))
    with pytest.raises(DomainError, match="more than"):
        invoice_record_payment(invoice, amount=12000, method="bank_transfer", now=NOW, actor=STAFF)
    invoice.refresh_from_db()
    assert invoice.amount_paid == 0 and invoice.payments.count() == 0

    invoice_record_payment(
        invoice, amount=12000, method="bank_transfer", now=NOW, actor=STAFF, credit_excess=True
    )
    invoice.customer.refresh_from_db()
    assert invoice.customer.balance == -2000 and invoice.status == S.PAID


@pytest.mark.parametrize("amount", [0, -5, 10**14, 12.5, True])
def test_bad_payment_amounts_change_nothing(amount):
    invoice = make_open()
    with pytest.raises(DomainError):
        invoice_record_payment(invoice, amount=amount, method="cheque", now=NOW, actor=STAFF)
    assert invoice.payments.count() == 0


def test_payment_cannot_be_recorded_on_paid_or_void_or_draft():
    for invoice in (make_draft(), invoice_void(make_open(), now=NOW, actor=STAFF)):
        with pytest.raises(DomainError):
            invoice_record_payment(invoice, amount=100, method="cheque", now=NOW, actor=STAFF)


def test_uncollectible_can_still_be_paid():
    invoice = invoice_mark_uncollectible(make_open(lines=((1, 500),)), now=NOW, actor=STAFF)
    invoice_record_payment(invoice, amount=500, method="cash", now=NOW, actor=STAFF)
    assert invoice.status == S.PAID


def test_finalized_invoice_is_frozen_except_memo_and_metadata():
    invoice = make_open()
    with pytest.raises(DomainError, match="frozen"):
        invoice_update(invoice, now=NOW, actor=STAFF, due_date=date(2027, 1, 1))
    invoice_update(invoice, now=NOW, actor=STAFF, description="Thanks!", metadata={"po": "42"})
    invoice.refresh_from_db()
    assert invoice.description == "Thanks!" and invoice.metadata == {"po": "42"}


def test_void_refused_when_payments_exist():
    invoice = make_open(lines=((1, 10000),))
    invoice_record_payment(invoice, amount=100, method="cash", now=NOW, actor=STAFF)
    with pytest.raises(DomainError, match="credit note"):
        invoice_void(invoice, now=NOW, actor=STAFF)
    invoice.refresh_from_db()
    assert invoice.status == S.OPEN


def test_revise_voids_and_returns_an_editable_copy():
    invoice = make_open(lines=((3, 1000), (1, 250)))
    copy = invoice_revise(invoice, now=NOW, actor=STAFF)
    invoice.refresh_from_db()
    assert invoice.status == S.VOID
    assert copy.status == S.DRAFT and copy.from_invoice == invoice
    assert copy.total == invoice.total and copy.lines.count() == 2
    assert copy.automatically_finalizes_at is None
    assert "invoice.revised" in events(invoice)


def test_stale_status_loses_the_race():
    invoice = make_open()
    stale = Invoice.objects.get(pk=invoice.pk)
    invoice_void(invoice, now=NOW, actor=STAFF)
    with pytest.raises(DomainError):
        invoice_mark_uncollectible(stale, now=NOW, actor=STAFF)
    stale.refresh_from_db()
    assert stale.status == S.VOID


def test_finalize_refuses_empty_or_past_due():
    with pytest.raises(DomainError, match="at least one line"):
        invoice_finalize(make_draft(lines=()), now=NOW, actor=STAFF)
    past = make_draft(due_date=NOW.date() - timedelta(days=1))
    with pytest.raises(DomainError, match="past"):
        invoice_finalize(past, now=NOW, actor=STAFF)
    past.refresh_from_db()
    assert past.status == S.DRAFT and past.number is None
