"""Two workers at the same moment, on PostgreSQL: each thread has its own connection, a
barrier starts them together, and the database's row locks decide who goes first.

SQLite serialises whole transactions, so it cannot show these races: skipped there.
"""

import threading
from datetime import timedelta

import pytest
from django.db import connection

from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from invoices.models import Event, Invoice, InvoicingSettings, Payment
from invoices.services import (
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_record_payment,
    invoice_void,
)
from invoices.sweeps import finalize_due_drafts

from .factories import NOW, STAFF, make_customer, make_draft, make_open

# The marks of every test that needs real row locks and several connections.
POSTGRES_CONNECTIONS = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL (row locks, two real connections): "
        "run with DATABASE_URL=postgres://...",
    ),
    pytest.mark.django_db(transaction=True),
]
pytestmark = POSTGRES_CONNECTIONS

S = Invoice.Status
LATER = NOW + timedelta(hours=2)


def run_together(*jobs, lock_timeout: str | None = None):
    """Run each job in its own thread and connection, all released at once by a barrier.
    Returns, per job, ("ok", result) or ("error", exception). With `lock_timeout` (e.g.
    "20s"), a job waiting that long for a lock fails instead of hanging the test."""
    barrier = threading.Barrier(len(jobs))
    outcomes = [None] * len(jobs)

    def worker(index, job):
        try:
            connection.ensure_connection()  # connect before the start line, not after
            if lock_timeout:
                with connection.cursor() as cursor:
                    cursor.execute("SELECT set_config('lock_timeout', %s, false)",
                                   [lock_timeout])
            barrier.wait(timeout=30)
            outcomes[index] = ("ok", job())
        except Exception as error:  # noqa: BLE001 - the test inspects what happened
            outcomes[index] = ("error", error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i, job)) for i, job in enumerate(jobs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(thread.is_alive() for thread in threads), "a worker hung"
    return outcomes


def finalize_each(drafts):
    """A worker that finalizes these drafts one after the other; returns what it refused."""

    def job():
        refused = []
        for draft in drafts:
            try:
                invoice_finalize(draft, now=NOW, actor=STAFF)
            except DomainError as error:
                refused.append((draft.pk, error.message))
        return refused

    return job


def unexpected_errors(outcomes):
    return [value for kind, value in outcomes if kind == "error"]


def numbers():
    return set(Invoice.objects.exclude(number=None).values_list("number", flat=True))


def expected(prefix, count):
    return {f"{prefix}-{n:04d}" for n in range(1, count + 1)}


@pytest.fixture(autouse=True)
def _settings_row():
    InvoicingSettings.load()  # created once here, not raced for by the workers


@pytest.mark.parametrize("workers", [2, 4])
def test_concurrent_finalizations_of_one_customer_get_gapless_distinct_numbers(workers):
    # given 20 drafts of one customer
    customer = make_customer(invoice_prefix="ACME")
    drafts = [make_draft(customer) for _ in range(20)]

    # when several workers finalize them at the same moment
    outcomes = run_together(*[finalize_each(drafts[i::workers]) for i in range(workers)])

    # then every draft got exactly one number and the numbers are 0001..0020, no gap
    assert unexpected_errors(outcomes) == []
    assert all(refused == [] for _kind, refused in outcomes)
    assert numbers() == expected("ACME", 20)
    assert Invoice.objects.filter(status=S.OPEN).count() == 20
    assert Event.objects.filter(type="invoice.finalized").count() == 20


def test_account_wide_numbering_across_customers_is_gapless_under_concurrency():
    # given account-wide numbering and drafts of five customers
    InvoicingSettings.objects.filter(pk=1).update(numbering="account", account_prefix="INV")
    customers = [make_customer() for _ in range(5)]
    drafts = [make_draft(customers[n % 5]) for n in range(20)]

    # when four workers finalize them at once
    outcomes = run_together(*[finalize_each(drafts[i::4]) for i in range(4)])

    # then one sequence, no gap, no duplicate
    assert unexpected_errors(outcomes) == []
    assert numbers() == expected("INV", 20)


def test_a_refused_finalization_among_concurrent_ones_leaves_no_gap():
    # given drafts of one customer, some of which cannot be finalized (due date passed)
    customer = make_customer(invoice_prefix="GAPS")
    good = [make_draft(customer) for _ in range(12)]
    bad = [make_draft(customer, due_date=NOW.date() - timedelta(days=1)) for _ in range(4)]
    mixed = good[:6] + bad[:2], bad[2:] + good[6:]

    # when two workers finalize them together
    outcomes = run_together(finalize_each(mixed[0]), finalize_each(mixed[1]))

    # then the refused ones gave their number back: 12 numbers, no gap
    assert unexpected_errors(outcomes) == []
    assert sum(len(refused) for _kind, refused in outcomes) == 4
    assert numbers() == expected("GAPS", 12)
    assert Invoice.objects.filter(pk__in=[d.pk for d in bad], status=S.DRAFT).count() == 4


def successes(outcomes):
    return [value for kind, value in outcomes if kind == "ok"]


def refusals(outcomes):
    errors = unexpected_errors(outcomes)
    assert all(isinstance(error, DomainError) for error in errors), errors
    return errors


@pytest.mark.parametrize("round_", range(3))
def test_two_payments_that_together_exceed_the_remaining_one_wins(round_):
    # given an open invoice of 100.00
    invoice = make_open(lines=((1, 10000),))

    # when two staff record 60.00 each at the same moment
    def pay():
        return invoice_record_payment(
            Invoice.objects.get(pk=invoice.pk), amount=6000, method="bank_transfer",
            now=NOW, actor=STAFF,
        )

    outcomes = run_together(pay, pay)

    # then exactly one is recorded, the other is told why, and the amounts agree
    assert len(successes(outcomes)) == 1 and len(refusals(outcomes)) == 1
    assert "more than" in refusals(outcomes)[0].message
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid, invoice.amount_remaining) == (S.OPEN, 6000, 4000)
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert Event.objects.filter(invoice=invoice, type="invoice.payment_succeeded").count() == 1


@pytest.mark.parametrize("round_", range(3))
def test_void_and_full_payment_at_once_one_wins(round_):
    invoice = make_open(lines=((1, 10000),))

    outcomes = run_together(
        lambda: invoice_void(Invoice.objects.get(pk=invoice.pk), now=NOW, actor=STAFF),
        lambda: invoice_record_payment(
            Invoice.objects.get(pk=invoice.pk), amount=10000, method="cheque", now=NOW, actor=STAFF
        ),
    )

    assert len(successes(outcomes)) == 1 and len(refusals(outcomes)) == 1
    invoice.refresh_from_db()
    kinds = set(Event.objects.filter(invoice=invoice).values_list("type", flat=True))
    if invoice.status == S.VOID:
        assert invoice.amount_paid == 0 and not Payment.objects.filter(invoice=invoice).exists()
        assert "invoice.voided" in kinds and "invoice.paid" not in kinds
    else:
        assert invoice.status == S.PAID
        assert (invoice.amount_paid, invoice.amount_remaining) == (10000, 0)
        assert "invoice.paid" in kinds and "invoice.voided" not in kinds


@pytest.mark.parametrize("round_", range(3))
def test_two_staff_voiding_the_same_invoice_one_wins(round_):
    customer = make_customer()
    balance_transaction_create(
        customer=customer, amount=-3000, type="adjustment", now=NOW, actor=STAFF
    )
    invoice = make_open(customer, lines=((1, 10000),))  # 30.00 of credit applied

    def void():
        return invoice_void(Invoice.objects.get(pk=invoice.pk), now=NOW, actor=STAFF)

    outcomes = run_together(void, void)

    assert len(successes(outcomes)) == 1 and len(refusals(outcomes)) == 1
    assert Event.objects.filter(invoice=invoice, type="invoice.voided").count() == 1
    customer.refresh_from_db()
    assert customer.balance == -3000  # the credit came back once, not twice


@pytest.mark.parametrize("round_", range(3))
def test_void_and_mark_uncollectible_at_once_leave_a_consistent_trail(round_):
    # uncollectible -> void is allowed, so either void wins alone, or both succeed in
    # the order uncollectible then void; never an uncollectible invoice after a void.
    invoice = make_open()

    outcomes = run_together(
        lambda: invoice_void(Invoice.objects.get(pk=invoice.pk), now=NOW, actor=STAFF),
        lambda: invoice_mark_uncollectible(
            Invoice.objects.get(pk=invoice.pk), now=NOW, actor=STAFF
        ),
    )

    refused = refusals(outcomes)
    invoice.refresh_from_db()
    assert invoice.status == S.VOID
    trail = list(
        Event.objects.filter(
            invoice=invoice, type__in=["invoice.voided", "invoice.marked_uncollectible"]
        )
        .order_by("id").values_list("type", flat=True)
    )
    if refused:
        assert outcomes[0][0] == "ok" and trail == ["invoice.voided"]
    else:
        assert trail == ["invoice.marked_uncollectible", "invoice.voided"]


@pytest.mark.parametrize("numbering", ["customer", "account"])
def test_two_sweeps_on_the_same_due_drafts_finalize_each_once(numbering):
    # given 30 due drafts spread over three customers
    InvoicingSettings.objects.filter(pk=1).update(numbering=numbering, account_prefix="INV")
    customers = [make_customer(invoice_prefix=f"SWP{n}") for n in range(3)]
    drafts = [make_draft(customers[n % 3]) for n in range(30)]

    # when two beat workers sweep at the same moment, in small batches
    def sweep():
        return finalize_due_drafts(now=LATER, batch_size=4)

    outcomes = run_together(sweep, sweep)

    # then every draft is finalized exactly once, numbers gapless
    assert unexpected_errors(outcomes) == []
    assert sum(result["finalized"] for result in successes(outcomes)) == 30
    assert Invoice.objects.filter(pk__in=[d.pk for d in drafts], status=S.OPEN).count() == 30
    per_invoice = Event.objects.filter(type="invoice.finalized").values_list("invoice", flat=True)
    assert sorted(per_invoice) == sorted(d.pk for d in drafts)
    if numbering == "account":
        assert numbers() == expected("INV", 30)
    else:
        assert numbers() == set().union(*(expected(f"SWP{n}", 10) for n in range(3)))
