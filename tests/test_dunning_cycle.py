"""A whole dunning cycle played out on one test clock, on SQLite and PostgreSQL.

Six customers live on the clock, one per way a payment can go: a card that pays, a card
short of funds forever (a fixed schedule of 8 retries in 2 weeks, then uncollectible),
a card that recovers after 3 days, a payment that stays processing for 2 days, a stolen
card replaced mid-way, and a send_invoice invoice nobody pays (uncollectible 30 days past
due). The clock advances to day 5 (when the new card is added) then to day 45, in one jump
each or day by day: either way it stops at each due moment, and every attempt's time,
status, event and email is then what a person reading the invoice's history would expect.
"""

import zoneinfo
from datetime import UTC, datetime, timedelta

import pytest

from automations.clocks import clock_advance
from automations.models import BillingSettings, RetryPolicy
from customers.models import TestClock
from invoices import collection
from invoices.gateways.models import SimulatedCharge
from invoices.models import Event, Invoice, Payment

from .factories import NOW, add_card, make_charged, make_customer, make_open

T0 = NOW
STEP = timedelta(hours=42)  # the fixed schedule: 14 days / 8 retries
NEW_CARD_AT = T0 + timedelta(days=5)
END = T0 + timedelta(days=45)
S = Invoice.Status
PARIS = zoneinfo.ZoneInfo("Europe/Paris")


def history(invoice):
    """The invoice's timeline, oldest first, as (event type, at); an email sent appears
    as "email:<kind>"."""
    return [
        (f"email:{event.data['email']}" if event.type == "email.sent" else event.type,
         event.created_at)
        for event in Event.objects.filter(invoice=invoice).order_by("created_at", "pk")
    ]


def attempts(invoice):
    return list(invoice.payment_attempts.order_by("created_at", "pk"))


def advance(clock, to, step):
    """clock_advance to `to`, in one call (step None) or one call per `step`."""
    runs = []
    while clock.frozen_time < to:
        stop = to if step is None else min(clock.frozen_time + step, to)
        runs.append(clock_advance(clock, to=stop))
    return runs


def cycle_run(step):
    """Given the six customers and their invoices at T0; when the clock runs 45 days with
    a new card added to the stolen-card customer on day 5."""
    RetryPolicy.objects.create(
        name="Fixed, 8 in 2 weeks", mode=RetryPolicy.Mode.FIXED, max_retries=8, window_days=14,
        after_last_retry=RetryPolicy.AfterLastRetry.MARK_UNCOLLECTIBLE,
        customer_segments=["fixed"],
    )
    BillingSettings.objects.filter(pk=BillingSettings.load().pk).update(
        uncollectible_after_days=30
    )
    clock = TestClock.objects.create(name="dunning", frozen_time=T0)

    def customer(**fields):
        return make_customer(test_clock=clock, **fields)

    invoices = {
        "pays": make_charged("sim_4242", now=T0, customer=customer()),
        "short": make_charged("sim_9995", now=T0, customer=customer(segment="fixed")),
        "recovers": make_charged("sim_0333", now=T0, customer=customer(segment="fixed")),
        "processing": make_charged("sim_2222", now=T0, customer=customer()),
        "stolen": make_charged("sim_9979", now=T0, customer=customer()),
        "unpaid": make_open(customer(timezone="Europe/Paris"), now=T0,
                            collection_method="send_invoice", days_until_due=10),
    }
    runs = advance(clock, NEW_CARD_AT, step)
    stolen = invoices["stolen"]
    stolen.refresh_from_db()
    held_on_day_5 = (stolen.status, stolen.payment_hold, stolen.next_payment_attempt)
    add_card(stolen.customer, "sim_4242", now=clock.frozen_time)
    runs += advance(clock, END, step)
    for invoice in invoices.values():
        invoice.refresh_from_db()
    clock.refresh_from_db()
    return {"clock": clock, "invoices": invoices, "runs": runs,
            "held_on_day_5": held_on_day_5}


@pytest.mark.parametrize("step", [None, timedelta(days=1)], ids=["two-jumps", "day-by-day"])
def test_a_whole_dunning_cycle_on_a_test_clock(step):
    # One run of the cycle (a couple of seconds), then what each customer lived through.
    cycle = cycle_run(step)
    check_the_clock_ends_where_asked_with_nothing_left_due(cycle)
    check_a_card_that_pays_is_charged_once_at_finalization(cycle)
    check_insufficient_funds_forever_follows_the_fixed_schedule_then_uncollectible(cycle)
    check_a_card_that_recovers_is_paid_by_the_first_retry_after_3_days(cycle)
    check_a_processing_payment_settles_when_the_gateway_says(cycle)
    check_a_stolen_card_waits_for_a_new_one_then_pays_at_once(cycle)
    check_an_unpaid_send_invoice_becomes_uncollectible_30_days_past_due(cycle)


def check_the_clock_ends_where_asked_with_nothing_left_due(cycle):
    clock = cycle["clock"]
    assert clock.frozen_time == END
    assert collection.next_due_at(clock) is None
    # 1 + 9 + 3 + 1 + 2 attempts, each one charge at the gateway with its own key.
    runs = cycle["runs"]
    total = {key: sum(run["collection"].get(key, 0) for run in runs)
             for key in ("attempted", "succeeded", "failed")}
    assert total == {"attempted": 16, "succeeded": 4, "failed": 12}
    assert sum(run["uncollectible"].get("uncollectible", 0) for run in runs) == 1
    assert sum(run["emails"].get("sent", 0) for run in runs) == 23
    keys = sorted(SimulatedCharge.objects.values_list("idempotency_key", flat=True))
    assert keys == sorted(
        a.idempotency_key for invoice in cycle["invoices"].values() for a in attempts(invoice)
    )


def check_a_card_that_pays_is_charged_once_at_finalization(cycle):
    invoice = cycle["invoices"]["pays"]
    [attempt] = attempts(invoice)
    assert (attempt.created_at, attempt.status) == (T0, "succeeded")
    assert (invoice.status, invoice.paid_at, invoice.attempt_count) == (S.PAID, T0, 1)
    assert invoice.amount_paid == invoice.total and invoice.amount_remaining == 0
    assert history(invoice) == [
        ("invoice.created", T0), ("invoice.finalized", T0),
        ("invoice.payment_succeeded", T0), ("invoice.paid", T0), ("email:receipt", T0),
    ]


def check_insufficient_funds_forever_follows_the_fixed_schedule_then_uncollectible(cycle):
    invoice = cycle["invoices"]["short"]
    schedule = [T0 + k * STEP for k in range(9)]  # the first attempt and 8 retries
    assert schedule[-1] == T0 + timedelta(days=14)

    made = attempts(invoice)
    assert [a.created_at for a in made] == schedule
    assert {(a.status, a.decline_code) for a in made} == {("failed", "insufficient_funds")}
    assert [a.retry_of_decline_code for a in made] == [""] + ["insufficient_funds"] * 8
    assert (invoice.status, invoice.attempt_count) == (S.UNCOLLECTIBLE, 9)
    assert invoice.marked_uncollectible_at == schedule[-1]
    assert invoice.next_payment_attempt is None and invoice.past_due_at == T0
    assert invoice.next_payment_attempt_reason.startswith("All 8 retries used")
    assert invoice.amount_paid == 0 and not Payment.objects.filter(invoice=invoice).exists()

    failed = Event.objects.filter(invoice=invoice, type="invoice.payment_failed").order_by("pk")
    assert [e.created_at for e in failed] == schedule
    # Each failure announces the next retry; the last one announces none.
    assert [e.data["next_payment_attempt"] for e in failed] == [
        at.isoformat() for at in schedule[1:]
    ] + [None]
    # A failed-payment email after each failure but the last: by delivery time the
    # invoice is uncollectible and the email, which asks for payment, is dropped.
    assert history(invoice) == [("invoice.created", T0), ("invoice.finalized", T0)] + [
        step for at in schedule[:-1]
        for step in (("invoice.payment_failed", at), ("email:payment_failed", at))
    ] + [("invoice.payment_failed", schedule[-1]),
         ("invoice.marked_uncollectible", schedule[-1])]
    uncollectible = Event.objects.get(invoice=invoice, type="invoice.marked_uncollectible")
    assert uncollectible.data["reason"] == "retries_exhausted"


def check_a_card_that_recovers_is_paid_by_the_first_retry_after_3_days(cycle):
    invoice = cycle["invoices"]["recovers"]
    made = attempts(invoice)
    assert [(a.created_at, a.status) for a in made] == [
        (T0, "failed"), (T0 + STEP, "failed"), (T0 + 2 * STEP, "succeeded"),
    ]
    assert (invoice.status, invoice.paid_at, invoice.attempt_count) == (S.PAID, T0 + 2 * STEP, 3)
    payment = Payment.objects.get(invoice=invoice)
    assert (payment.amount, payment.received_at) == (invoice.total, T0 + 2 * STEP)
    assert made[-1].payment == payment
    assert history(invoice) == [
        ("invoice.created", T0), ("invoice.finalized", T0),
        ("invoice.payment_failed", T0), ("email:payment_failed", T0),
        ("invoice.payment_failed", T0 + STEP), ("email:payment_failed", T0 + STEP),
        ("invoice.payment_succeeded", T0 + 2 * STEP), ("invoice.paid", T0 + 2 * STEP),
        ("email:receipt", T0 + 2 * STEP),
    ]


def check_a_processing_payment_settles_when_the_gateway_says(cycle):
    invoice = cycle["invoices"]["processing"]
    [attempt] = attempts(invoice)
    settled = T0 + timedelta(days=2)
    assert (attempt.created_at, attempt.completed_at, attempt.status) == (T0, settled, "succeeded")
    assert (invoice.status, invoice.paid_at, invoice.attempt_count) == (S.PAID, settled, 1)
    # No email while the payment is processing; a receipt once it has settled.
    assert history(invoice) == [
        ("invoice.created", T0), ("invoice.finalized", T0), ("invoice.payment_processing", T0),
        ("invoice.payment_succeeded", settled), ("invoice.paid", settled),
        ("email:receipt", settled),
    ]
    assert SimulatedCharge.objects.filter(idempotency_key=attempt.idempotency_key).count() == 1


def check_a_stolen_card_waits_for_a_new_one_then_pays_at_once(cycle):
    invoice = cycle["invoices"]["stolen"]
    assert cycle["held_on_day_5"] == (S.OPEN, "hard_decline", None)
    made = attempts(invoice)
    assert [(a.created_at, a.status, a.decline_code, a.hard_decline) for a in made] == [
        (T0, "failed", "stolen_card", True), (NEW_CARD_AT, "succeeded", "", False),
    ]
    assert made[0].payment_method != made[1].payment_method
    assert (invoice.status, invoice.paid_at, invoice.attempt_count) == (S.PAID, NEW_CARD_AT, 2)
    failed = Event.objects.get(invoice=invoice, type="invoice.payment_failed")
    assert failed.data["hard_decline"] is True and failed.data["next_payment_attempt"] is None
    assert history(invoice) == [
        ("invoice.created", T0), ("invoice.finalized", T0),
        ("invoice.payment_failed", T0), ("email:payment_failed_hard", T0),
        ("invoice.payment_succeeded", NEW_CARD_AT), ("invoice.paid", NEW_CARD_AT),
        ("email:receipt", NEW_CARD_AT),
    ]
    attached = Event.objects.filter(
        customer=invoice.customer, type="payment_method.attached"
    ).order_by("pk").last()
    assert attached.created_at == NEW_CARD_AT
    assert attached.data["resumed_invoices"] == [invoice.pk]


def check_an_unpaid_send_invoice_becomes_uncollectible_30_days_past_due(cycle):
    invoice = cycle["invoices"]["unpaid"]
    # Due 10 days after T0, past due from the next midnight in the customer's time zone.
    assert invoice.past_due_at.isoformat() == "2026-03-12T23:00:00+00:00"
    moved_at = invoice.past_due_at + timedelta(days=30)
    assert (invoice.status, invoice.marked_uncollectible_at) == (S.UNCOLLECTIBLE, moved_at)
    assert invoice.attempt_count == 0 and not invoice.payment_attempts.exists()
    event = Event.objects.get(invoice=invoice, type="invoice.marked_uncollectible")
    assert event.data == {"previous_status": "open", "status": "uncollectible",
                          "reason": "past_due", "days": 30}
    # Emailed at finalization, then reminded at 09:00 Paris time (winter, then summer
    # time) 7 and 3 days before the due date, on it, and 3, 7, 14 and 30 days after;
    # nothing once uncollectible.
    def paris_9am(month, day):
        return datetime(2026, month, day, 9, tzinfo=PARIS).astimezone(UTC)

    assert history(invoice) == [
        ("invoice.created", T0), ("invoice.finalized", T0), ("email:invoice_finalized", T0),
        ("email:reminder_upcoming", paris_9am(3, 5)), ("email:reminder_upcoming", paris_9am(3, 9)),
        ("email:reminder_due", paris_9am(3, 12)), ("email:reminder_overdue", paris_9am(3, 15)),
        ("email:reminder_overdue", paris_9am(3, 19)), ("email:reminder_overdue", paris_9am(3, 26)),
        ("email:reminder_overdue", paris_9am(4, 11)),
        ("invoice.marked_uncollectible", moved_at),
    ]
