"""The customer balance ledger and invoice amounts under random sequences of operations.

Each example builds a fresh customer, then applies random operations through the domain
functions: balance adjustments, finalizations (which apply the balance), payments (some
overpaid and credited), voids, uncollectible, credit notes (some refused) and their voids.
After every step the ledger must sum to the balance and the invoices must add up.
"""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction, Customer
from invoices.credit_notes import (
    CreditLine,
    credit_note_create,
    credit_note_split,
    credit_note_void,
    creditable_amount,
)
from invoices.models import CreditNote, Invoice
from invoices.services import (
    invoice_mark_uncollectible,
    invoice_record_payment,
    invoice_void,
)

from .factories import NOW, STAFF, make_customer, make_open

S = Invoice.Status
amounts = st.integers(1, 50_000)
picks = st.integers(0, 50)  # which invoice (modulo how many there are)

operations = st.one_of(
    st.tuples(st.just("adjust"), st.integers(-50_000, 50_000).filter(bool)),
    st.tuples(st.just("invoice"), amounts),
    st.tuples(st.just("pay"), picks, amounts, st.booleans()),
    st.tuples(st.just("void"), picks),
    st.tuples(st.just("uncollectible"), picks),
    st.tuples(st.just("credit_note"), picks, amounts, st.integers(0, 2), st.booleans()),
    st.tuples(st.just("void_credit_note"), picks),
)


def snapshot(customer):
    """Everything a refused operation must leave as it was."""
    invoices = list(
        Invoice.objects.filter(customer=customer).order_by("pk").values_list(
            "status", "amount_due", "amount_paid", "amount_remaining",
            "pre_payment_credit_notes_amount", "post_payment_credit_notes_amount",
        )
    )
    notes = list(
        CreditNote.objects.filter(invoice__customer=customer).order_by("pk")
        .values_list("status", "amount")
    )
    ledger = list(customer.balance_transactions.order_by("pk").values_list("amount", flat=True))
    return invoices, notes, ledger, Customer.objects.get(pk=customer.pk).balance


def pick(items, index):
    return items[index % len(items)] if items else None


def apply(operation, customer, invoices):
    kind, *args = operation
    if kind == "adjust":
        balance_transaction_create(
            customer=customer, amount=args[0], type="adjustment", now=NOW, actor=STAFF
        )
    elif kind == "invoice":
        invoices.append(make_open(customer, lines=((1, args[0]),)))
    elif kind == "pay" and invoices:
        index, amount, credit_excess = args
        invoice_record_payment(
            pick(invoices, index), amount=amount, method="bank_transfer", now=NOW, actor=STAFF,
            credit_excess=credit_excess,
        )
    elif kind == "void" and invoices:
        invoice_void(pick(invoices, args[0]), now=NOW, actor=STAFF)
    elif kind == "uncollectible" and invoices:
        invoice_mark_uncollectible(pick(invoices, args[0]), now=NOW, actor=STAFF)
    elif kind == "credit_note" and invoices:
        credit_note_attempt(pick(invoices, args[0]), *args[1:])
    elif kind == "void_credit_note":
        notes = CreditNote.objects.filter(invoice__customer=customer).order_by("pk")
        note = pick(list(notes), args[0])
        if note is not None:
            credit_note_void(note, now=NOW, actor=STAFF)


def credit_note_attempt(invoice, amount, how, split_right):
    """Ask for a credit note; check it is granted exactly when it fits."""
    invoice.refresh_from_db()
    available = creditable_amount(invoice)
    pre, post = credit_note_split(invoice, amount)
    splits = [(post, 0, 0), (post // 2, post - post // 2, 0), (0, 0, post)]
    credit, out_of_band, refund = splits[how]
    if not split_right:
        out_of_band += 1
    fits = invoice.status in (S.OPEN, S.PAID) and amount <= available and split_right
    try:
        note = credit_note_create(
            invoice, lines=[CreditLine(amount=amount)], now=NOW, actor=STAFF,
            credit_amount=credit, out_of_band_amount=out_of_band, refund_amount=refund,
        )
    except DomainError:
        assert not fits, "a credit note that fits was refused"
        raise
    assert fits, "a credit note that does not fit was issued"
    assert note.amount <= available and note.pre_payment_amount == pre


def check_ledger(customer):
    rows = list(customer.balance_transactions.order_by("created_at", "pk"))
    running = 0
    for row in rows:
        running += row.amount
        assert row.ending_balance == running
    customer.refresh_from_db()
    assert customer.balance == running == sum(row.amount for row in rows)


def check_invoices(customer):
    for invoice in Invoice.objects.filter(customer=customer):
        pre = invoice.pre_payment_credit_notes_amount
        credited = pre + invoice.post_payment_credit_notes_amount
        applied = invoice.ending_balance - invoice.starting_balance
        assert invoice.amount_remaining == invoice.amount_due - invoice.amount_paid
        assert min(invoice.amount_due, invoice.amount_paid, invoice.amount_remaining) >= 0
        assert 0 <= credited <= invoice.total
        assert invoice.amount_due == invoice.total - applied - pre
        if invoice.status == S.PAID:
            assert invoice.amount_remaining == 0
        if invoice.status == S.OPEN:
            assert invoice.amount_remaining > 0
        issued = invoice.credit_notes.filter(status=CreditNote.Status.ISSUED)
        assert sum(issued.values_list("pre_payment_amount", flat=True)) == (
            invoice.pre_payment_credit_notes_amount
        )
        assert sum(issued.values_list("post_payment_amount", flat=True)) == (
            invoice.post_payment_credit_notes_amount
        )


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(operations, min_size=1, max_size=14))
def test_ledger_sums_to_balance_and_invoices_add_up(steps):
    customer = make_customer()  # fresh for every example
    invoices = []
    for operation in steps:
        before = snapshot(customer)
        try:
            apply(operation, customer, invoices)
        except DomainError:
            assert snapshot(customer) == before, f"{operation} was refused but changed something"
        check_ledger(customer)
        check_invoices(customer)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(total=amounts, attempts=st.lists(amounts, min_size=1, max_size=6), paid=st.booleans())
def test_credits_never_exceed_what_can_be_credited(total, attempts, paid):
    customer = make_customer()
    invoice = make_open(customer, lines=((1, total),))
    if paid:
        invoice_record_payment(invoice, amount=total, method="cheque", now=NOW, actor=STAFF)
    for amount in attempts:
        before = snapshot(customer)
        try:
            credit_note_attempt(invoice, amount, how=0, split_right=True)
        except DomainError:
            assert snapshot(customer) == before
    invoice.refresh_from_db()
    issued = sum(invoice.credit_notes.values_list("amount", flat=True))
    assert issued <= total and creditable_amount(invoice) == total - issued
    credited_to_balance = sum(invoice.credit_notes.values_list("credit_amount", flat=True))
    assert Customer.objects.get(pk=customer.pk).balance == -credited_to_balance
    check_ledger(customer)
    check_invoices(customer)


def test_ledger_rows_are_typed_as_stripe_names_them():
    assert {"adjustment", "applied_to_invoice", "credit_note", "invoice_overpaid"} <= set(
        BalanceTransaction.Type.values
    )
