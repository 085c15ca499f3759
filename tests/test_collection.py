"""Automatic collection: attempts, outcomes, holds, retries, reconciliation."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automations.models import BillingSettings, OutboxMessage, RetryPolicy
from customers.clock_due import in_one_transaction, one_transaction
from customers.errors import DomainError
from customers.models import TestClock
from invoices import collection
from invoices.gateways.base import ChargeResult, Gateway, GatewayError
from invoices.gateways.models import SimulatedCharge
from invoices.gateways.simulated import SimulatedGateway
from invoices.models import Event, Invoice, PaymentAttempt

from .factories import NOW, STAFF, add_card, make_charged, make_customer, make_open


def collect(now=NOW, **kwargs):
    return collection.collect_due(now=now, **kwargs)


def events(invoice, type):
    return list(Event.objects.filter(invoice=invoice, type=type).order_by("pk"))


def test_finalizing_charge_automatically_makes_it_due_at_once():
    invoice = make_charged()
    assert invoice.next_payment_attempt == NOW
    assert invoice.past_due_at is None


def test_send_invoice_is_past_due_after_its_due_date_in_customer_time():
    customer = make_customer(timezone="America/New_York")
    invoice = make_open(customer, collection_method="send_invoice", days_until_due=30)
    assert invoice.next_payment_attempt is None
    local_midnight = invoice.past_due_at.astimezone(
        __import__("zoneinfo").ZoneInfo("America/New_York")
    )
    assert (local_midnight.hour, local_midnight.minute) == (0, 0)
    assert local_midnight.date() == invoice.due_date + timedelta(days=1)


def test_a_succeeding_card_pays_the_invoice_once():
    invoice = make_charged("sim_4242")
    counts = collect()
    invoice.refresh_from_db()
    assert (counts.attempted, counts.succeeded, invoice.status) == (1, 1, "paid")
    attempt = invoice.payment_attempts.get()
    assert attempt.status == "succeeded" and attempt.payment.amount == invoice.total
    assert invoice.attempt_count == 1 and invoice.next_payment_attempt is None
    assert [e.data["payment"] for e in events(invoice, "invoice.payment_succeeded")] == [
        attempt.payment_id
    ]
    assert len(events(invoice, "invoice.paid")) == 1
    assert collect(NOW + timedelta(days=1)).attempted == 0  # nothing due any more
    assert SimulatedCharge.objects.count() == 1


def test_a_soft_decline_is_retried_at_a_planned_time_with_a_reason():
    invoice = make_charged("sim_9995")  # insufficient_funds
    collect()
    invoice.refresh_from_db()
    assert invoice.status == "open"
    assert invoice.last_decline_code == "insufficient_funds"
    assert invoice.last_payment_error == "Your card has insufficient funds."
    assert invoice.past_due_at == NOW
    assert NOW + timedelta(hours=1) <= invoice.next_payment_attempt <= NOW + timedelta(days=14)
    assert invoice.next_payment_attempt_reason.startswith("Smart Retries: insufficient_funds")
    failed = events(invoice, "invoice.payment_failed")[0]
    assert failed.data["next_payment_attempt"] == invoice.next_payment_attempt.isoformat()
    assert failed.data["hard_decline"] is False


def test_a_hard_decline_is_never_retried_until_a_new_payment_method():
    invoice = make_charged("sim_9979")  # stolen_card
    collect()
    invoice.refresh_from_db()
    assert invoice.payment_hold == "hard_decline" and invoice.next_payment_attempt is None
    assert collect(NOW + timedelta(days=30)).attempted == 0
    later = NOW + timedelta(days=2)
    add_card(invoice.customer, "sim_4242", now=later)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == later and invoice.payment_hold == ""
    collect(later)
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_no_payment_method_puts_collection_on_hold():
    customer = make_customer()
    invoice = make_open(customer, collection_method="charge_automatically")
    counts = collect()
    invoice.refresh_from_db()
    assert counts.held == 1 and invoice.payment_hold == "no_payment_method"
    assert invoice.payment_attempts.count() == 0
    assert len(events(invoice, "invoice.collection_paused")) == 1


def test_requires_action_holds_and_records_the_event():
    invoice = make_charged("sim_3155")
    collect()
    invoice.refresh_from_db()
    assert invoice.payment_hold == "requires_action"
    assert len(events(invoice, "invoice.payment_action_required")) == 1


def test_processing_settles_later_through_the_check_sweep():
    invoice = make_charged("sim_2222")
    assert collect().processing == 1
    attempt = invoice.payment_attempts.get()
    assert attempt.status == "processing"
    # Not settled before the gateway says so, and not charged again meanwhile.
    collection.attempts_check_due(now=NOW + timedelta(hours=1))
    attempt.refresh_from_db()
    assert attempt.status == "processing"
    assert collect(NOW + timedelta(hours=5)).attempted == 0
    collection.attempts_check_due(now=NOW + timedelta(days=3))
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and invoice.status == "paid"
    assert SimulatedCharge.objects.count() == 1


def test_a_collection_batch_costs_the_same_queries_whatever_its_size():
    # given batches of successes, soft declines and processing payments, small then large
    def queries(per_card):
        for token in ("sim_4242", "sim_9995", "sim_2222"):
            for _ in range(per_card):
                make_charged(token)
        with CaptureQueriesContext(connection) as captured:
            counts = collect()
        assert (counts.attempted, counts.succeeded, counts.failed, counts.processing) == (
            3 * per_card, per_card, per_card, per_card
        )
        return len(captured)

    queries(1)  # the retry model's first load reads the history: later ones count it
    # then a larger batch makes no more queries (nothing is loaded row by row)
    assert queries(1) == queries(4)


def test_fixed_schedule_spreads_the_budget_over_the_window():
    settings = BillingSettings.load()
    RetryPolicy.objects.filter(pk=settings.default_retry_policy_id).update(
        mode="fixed", max_retries=4, window_days=7, after_last_retry="mark_uncollectible"
    )
    invoice = make_charged("sim_0002")  # generic_decline forever
    moments = []
    now = NOW
    for _ in range(10):
        collect(now)
        invoice.refresh_from_db()
        if invoice.next_payment_attempt is None:
            break
        moments.append(invoice.next_payment_attempt)
        now = invoice.next_payment_attempt
    assert [m - NOW for m in moments] == [timedelta(hours=42 * k) for k in range(1, 5)]
    assert invoice.status == "uncollectible" and invoice.attempt_count == 5
    assert invoice.next_payment_attempt_reason.startswith("All 4 retries used")


def test_staff_retry_of_a_paid_or_void_invoice_is_refused():
    invoice = make_charged("sim_4242")
    collect()
    with pytest.raises(DomainError, match="nothing to collect"):
        collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="staff")


def test_a_declined_staff_retry_keeps_the_planned_automatic_retry():
    invoice = make_charged("sim_9995")
    collect()
    invoice.refresh_from_db()
    planned, count = invoice.next_payment_attempt, invoice.attempt_count
    attempt = collection.invoice_charge(invoice, now=NOW + timedelta(minutes=5), actor=STAFF,
                                        source="staff")
    invoice.refresh_from_db()
    assert attempt.status == "failed"
    assert (invoice.next_payment_attempt, invoice.attempt_count) == (planned, count)


def test_the_same_idempotency_key_never_charges_twice():
    invoice = make_open(make_customer(), collection_method="send_invoice")
    key = f"hosted-{invoice.pk}-abc"
    first = collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="customer",
                                      idempotency_key=key, gateway_token="sim_9995")
    again = collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="customer",
                                      idempotency_key=key, gateway_token="sim_9995")
    assert first.pk == again.pk and first.status == "failed"
    assert SimulatedCharge.objects.count() == 1
    other = make_open(make_customer(), collection_method="send_invoice")
    with pytest.raises(DomainError, match="another invoice"):
        collection.invoice_charge(other, now=NOW, actor=STAFF, source="customer",
                                  idempotency_key=key, gateway_token="sim_4242")


def test_another_customers_payment_method_is_refused_and_nothing_is_written():
    invoice = make_open(make_customer(), collection_method="send_invoice")
    stranger = add_card(make_customer())
    with pytest.raises(DomainError, match="another customer"):
        collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="staff",
                                  payment_method=stranger)
    assert PaymentAttempt.objects.count() == 0


def test_sepa_debit_only_collects_euros():
    customer = make_customer(currency="USD")
    method = collection.payment_method_add(
        customer, type="sepa_debit", gateway_reference="sim_4242", last4="3000", now=NOW,
        actor=STAFF,
    )
    invoice = make_open(customer, collection_method="send_invoice")
    with pytest.raises(DomainError, match="SEPA"):
        collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="staff",
                                  payment_method=method)


@pytest.mark.parametrize("fields, message", [
    ({"type": "bitcoin"}, "Unknown payment method type"),
    ({"type": "card"}, "gateway's reference"),
    ({"type": "card", "gateway_reference": "x", "last4": "12a4"}, "4 digits"),
    ({"type": "card", "gateway_reference": "x", "exp_month": 13, "exp_year": 2027}, "valid"),
    ({"type": "card", "gateway_reference": "x", "exp_month": 1, "exp_year": 2020}, "expired"),
])
def test_bad_payment_methods_are_refused(fields, message):
    customer = make_customer()
    with pytest.raises(DomainError, match=message):
        collection.payment_method_add(customer, now=NOW, actor=STAFF, **fields)
    customer.refresh_from_db()
    assert customer.default_payment_method is None


class Exploding(Gateway):
    """A gateway that fails to answer in every way a real one can."""

    def __init__(self, error):
        self.error = error
        self.calls = 0

    def charge(self, request, *, now):
        self.calls += 1
        raise self.error

    def retrieve(self, key):
        raise self.error

    def refresh(self, reference, *, now):
        raise self.error


@pytest.mark.parametrize("error", [GatewayError("timeout"), KeyError("id"), ValueError("junk")])
def test_a_gateway_that_raises_leaves_a_pending_attempt_to_reconcile(error):
    invoice = make_charged("sim_4242")
    counts = collect(gateway=Exploding(error))
    attempt = invoice.payment_attempts.get()
    invoice.refresh_from_db()
    assert counts.unknown == 1 and attempt.status == "pending"
    assert invoice.status == "open" and invoice.next_payment_attempt is None
    # Back to a working gateway: the check sweep retrieves, finds nothing, and sends the
    # same charge with the same key, once.
    collection.attempts_check_due(now=NOW + timedelta(minutes=6), gateway=SimulatedGateway())
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    assert attempt.status == "succeeded" and invoice.status == "paid"
    assert list(SimulatedCharge.objects.values_list("idempotency_key", flat=True)) == [
        attempt.idempotency_key
    ]


def test_an_unknown_outcome_for_a_day_becomes_a_failed_attempt_and_is_retried():
    invoice = make_charged("sim_4242")
    gateway = Exploding(GatewayError("down"))
    collect(gateway=gateway)
    now = NOW
    while now < NOW + timedelta(days=1, minutes=10):
        now += timedelta(minutes=30)
        collection.attempts_check_due(now=now, gateway=gateway)
    attempt = invoice.payment_attempts.get()
    invoice.refresh_from_db()
    assert attempt.status == "failed" and attempt.decline_code == "gateway_error"
    assert invoice.next_payment_attempt is not None


class Lying(Gateway):
    """Answers that ChargeResult refuses: the outcome is unknown, not invented."""

    def charge(self, request, *, now):
        return ChargeResult(status="teleported", gateway_reference="x")

    def retrieve(self, key):
        return None

    def refresh(self, reference, *, now):
        return ChargeResult(status="succeeded", gateway_reference="x", amount_received=-5)


def test_a_malformed_gateway_answer_records_nothing_as_paid():
    invoice = make_charged("sim_4242")
    counts = collect(gateway=Lying())
    invoice.refresh_from_db()
    assert counts.unknown == 1 and invoice.amount_paid == 0
    assert "Unknown charge status" in invoice.payment_attempts.get().failure_message


def test_a_late_success_on_a_settled_invoice_becomes_customer_credit():
    invoice = make_charged("sim_2222")
    collect()
    from invoices.services import invoice_record_payment

    invoice_record_payment(invoice, amount=invoice.amount_remaining, method="bank_transfer",
                           now=NOW + timedelta(hours=2), actor=STAFF)
    collection.attempts_check_due(now=NOW + timedelta(days=3))
    invoice.refresh_from_db()
    invoice.customer.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total
    assert invoice.customer.balance == -invoice.total


def test_partial_payment_within_tolerance_is_reconciled_with_a_credit_note():
    settings = BillingSettings.load()
    settings.partial_payment_tolerance = {"EUR": 500}
    settings.save()
    invoice = make_open(make_customer(), collection_method="send_invoice")

    class Partial(SimulatedGateway):
        def charge_many(self, items):
            return [ChargeResult(status="succeeded", gateway_reference="p1",
                                 amount_received=request.amount - 300) for request, _ in items]

    collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="customer",
                              gateway_token="sim_4242", gateway=Partial())
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    note = invoice.credit_notes.get()
    assert note.amount == 300 and note.pre_payment_amount == 300


def test_card_network_cap_pushes_retries_out():
    settings = BillingSettings.load()
    RetryPolicy.objects.filter(pk=settings.default_retry_policy_id).update(
        mode="custom", custom_schedule=[1, 1, 1, 1, 1, 1, 1, 1], window_days=60
    )
    customer = make_customer()
    method = add_card(customer, "sim_0002")
    # 15 earlier attempts on this card in the last 30 days, on other invoices.
    for n in range(15):
        other = make_open(customer, collection_method="send_invoice")
        PaymentAttempt.objects.create(
            invoice=other, customer=customer, payment_method=method, gateway_token="sim_0002",
            source="automatic", amount=1, currency="EUR", idempotency_key=f"old-{n}",
            status="failed", created_at=NOW - timedelta(days=20 - n),
        )
    invoice = make_charged("sim_0002", customer=customer)
    collect()
    invoice.refresh_from_db()
    reason = invoice.next_payment_attempt_reason
    assert invoice.next_payment_attempt >= NOW + timedelta(days=11), reason


def test_automatic_collection_off_charges_nothing():
    settings = BillingSettings.load()
    settings.automatic_collection = False
    settings.save()
    make_charged("sim_4242")
    assert collect().attempted == 0
    assert PaymentAttempt.objects.count() == 0


def test_a_check_sweep_within_a_transaction_claims_without_asking_first():
    """A clock in a simulation sweeps within its transaction, and nearly every stop has
    attempts to check: the claim finds them itself, no read before it."""
    invoice = make_charged("sim_2222")  # processing: checked again later
    collect()
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collection.attempts_check_due(now=NOW + timedelta(days=3))
    assert counts.succeeded == 1
    assert not [q for q in captured if q["sql"].startswith('SELECT 1 AS "a"')]
    invoice.refresh_from_db()
    assert invoice.status == "paid"
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collection.attempts_check_due(now=NOW + timedelta(days=4))
    assert counts.as_dict() == collection.Counts().as_dict() and len(captured) == 1


def busy_reads(captured) -> list[str]:
    """The reads of the claimed invoices' attempts in flight or held, apart."""
    return [q["sql"] for q in captured if q["sql"].startswith(
        'SELECT "invoices_paymentattempt"."invoice_id" AS "invoice_id", '
        '"invoices_paymentattempt"."status" AS "status"')]


def locking_reads(captured) -> list[str]:
    return [q["sql"] for q in captured
            if q["sql"].startswith("SELECT") and "FOR UPDATE" in q["sql"]]


def test_within_a_transaction_a_batch_is_recorded_without_locking_its_rows_again():
    """A clock in a simulation collects within its transaction: the claim's locks on the
    invoices and their new attempts are held until the outcomes are recorded, so the
    recording reads neither again (two round trips a batch fewer). The outcomes are those
    of the rows as written."""
    invoices = [make_charged(token) for token in ("sim_4242", "sim_9995", "sim_2222")]
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collect()
    assert (counts.succeeded, counts.failed, counts.processing) == (1, 1, 1)
    # the claim of the invoices is the only locking read, and it reads whether one has
    # an attempt in flight or held (no read of those apart)
    assert len(locking_reads(captured)) == 1
    assert '"invoices_invoice"' in locking_reads(captured)[0]
    assert not busy_reads(captured)
    paid, declined, processing = [
        PaymentAttempt.objects.get(invoice=invoice) for invoice in invoices]
    assert (paid.status, paid.payment.method, paid.duration_ms is not None) == (
        "succeeded", "card", True)
    assert (declined.status, declined.decline_code) == ("failed", "insufficient_funds")
    assert processing.status == "processing" and processing.check_at == NOW + timedelta(hours=1)
    for invoice in invoices:
        invoice.refresh_from_db()
    assert [invoice.status for invoice in invoices] == ["paid", "open", "open"]
    assert invoices[1].next_payment_attempt > NOW and invoices[1].attempt_count == 1


def test_within_a_transaction_a_check_locks_its_attempts_once():
    """The check sweep within a transaction: the claim locks the attempts (with their
    payment method) and their invoices until their outcomes are recorded; no UPDATE
    pushes them past the next tick and neither is read again."""
    invoice = make_charged("sim_2222")  # processing: checked again later
    collect()
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collection.attempts_check_due(now=NOW + timedelta(days=3))
    assert counts.succeeded == 1
    [claim] = locking_reads(captured)
    assert 'FOR UPDATE OF "invoices_paymentattempt", "invoices_invoice" SKIP LOCKED' in claim
    assert not [q for q in captured if q["sql"].startswith(
        'UPDATE "invoices_paymentattempt" SET "check_at" =')]
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.status == "succeeded" and attempt.payment.method == "card"
    invoice.refresh_from_db()
    assert invoice.status == "paid"


def test_a_batchs_emails_carry_the_clock_of_the_customers_it_loaded():
    # The failed-payment email of a test clock's customer carries the clock (the clock's
    # outbox sweep finds it by it), taken from the customer the batch loaded, not read
    # again.
    clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)
    invoice = make_charged("sim_9995", customer=make_customer(test_clock=clock))
    with CaptureQueriesContext(connection) as captured:
        assert collect(test_clock=clock).failed == 1
    message = OutboxMessage.objects.get(invoice=invoice, kind="payment_failed")
    assert message.test_clock_id == clock.pk
    assert not [q for q in captured if q["sql"].startswith('SELECT "customers_customer"."id"')]


def test_within_a_transaction_the_simulated_gateway_charges_a_batch_without_a_savepoint():
    # The batch's keys are those of attempts this uncommitted transaction wrote: no other
    # call can take them first, and the batch needs no savepoint to fall back from.
    for token in ("sim_4242", "sim_9995"):
        make_charged(token)
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collect()
    assert (counts.succeeded, counts.failed) == (1, 1)
    assert not [q for q in captured if "SAVEPOINT" in q["sql"]]


def test_within_a_transaction_the_claim_is_the_read_batch_after_batch():
    # A clock in a simulation collects within its transaction: no read of the due
    # invoices before their claim (no transaction to begin and commit around it), and
    # the batches follow each other in due order, each invoice attempted once.
    invoices = [make_charged("sim_4242", now=NOW - timedelta(minutes=n)) for n in range(5)]
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collect(batch_size=2)
    assert counts.attempted == counts.succeeded == 5
    invoice_reads = [q["sql"] for q in captured
                     if q["sql"].startswith('SELECT "invoices_invoice"."next_payment_attempt"')
                     or q["sql"].startswith('SELECT "invoices_invoice"."id"')
                     and 'FOR UPDATE OF "invoices_invoice" SKIP LOCKED' in q["sql"]]
    assert len(invoice_reads) == 3  # the claims of 2, 2 and 1
    assert all("SKIP LOCKED" in sql for sql in invoice_reads)
    assert {PaymentAttempt.objects.filter(invoice=invoice).count() for invoice in invoices} == {1}


def test_sweeps_in_a_transaction_not_said_to_be_one_take_productions_path():
    """The shorter path is chosen by one_transaction (a simulation's clock says so), not
    by a transaction being open: in some other transaction (here the test's, as under an
    admin action) collection reads before its claim, the simulated gateway takes its
    savepoint and the check sweep asks first and pushes its claim past the next tick."""
    invoices = [make_charged(token) for token in ("sim_4242", "sim_2222")]
    with CaptureQueriesContext(connection) as captured:
        counts = collect()
    assert (counts.succeeded, counts.processing) == (1, 1)
    assert [q for q in captured if "SAVEPOINT" in q["sql"]]
    assert [q for q in captured
            if q["sql"].startswith('SELECT "invoices_invoice"."next_payment_attempt"')]
    assert len(locking_reads(captured)) == 3  # the claim; invoices and attempts recorded
    assert len(busy_reads(captured)) == 1  # once the invoices are locked
    with CaptureQueriesContext(connection) as captured:
        counts = collection.attempts_check_due(now=NOW + timedelta(days=3))
    assert counts.succeeded == 1
    assert [q for q in captured if q["sql"].startswith('SELECT 1 AS "a"')]
    assert [q for q in captured if q["sql"].startswith(
        'UPDATE "invoices_paymentattempt" SET "check_at" =')]
    assert {invoice.status for invoice in
            Invoice.objects.filter(pk__in=[i.pk for i in invoices])} == {"paid"}


def test_one_transaction_is_said_only_within_a_transaction():
    assert not in_one_transaction()
    with one_transaction():
        assert in_one_transaction()
    assert not in_one_transaction()
