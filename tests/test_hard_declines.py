"""A hard-declined payment method is never charged again, on any invoice, until the
customer replaces it or the customer or staff re-enable it."""

from datetime import timedelta

import pytest

from automations.notifications.models import OutboxMessage
from customers.errors import DomainError
from invoices import collection
from invoices.gateways.models import SimulatedCharge
from invoices.models import Event, PaymentAttempt

from .factories import NOW, STAFF, add_card, make_charged

pytestmark = pytest.mark.django_db


def collect(now):
    return collection.collect_due(now=now)


def test_a_stolen_card_is_never_charged_again_on_the_next_invoice_until_replaced():
    invoice = make_charged("sim_9979")  # stolen_card
    customer = invoice.customer
    collect(NOW)
    method = customer.payment_methods.get()
    assert (method.unusable_code, method.unusable_at) == ("stolen_card", NOW)
    assert Event.objects.filter(type="payment_method.disabled", customer=customer).count() == 1

    # A month later the next invoice: held, not charged, the customer asked for a card.
    later = NOW + timedelta(days=30)
    second = make_charged(customer=customer, now=later)
    counts = collect(later)
    second.refresh_from_db()
    assert counts.attempted == 0 and counts.held == 1
    assert second.payment_hold == "hard_decline" and second.next_payment_attempt is None
    assert "stolen_card" in second.last_payment_error
    assert SimulatedCharge.objects.count() == 1  # the first decline only
    asked = OutboxMessage.objects.filter(invoice=second, kind="payment_failed_hard")
    assert asked.count() == 1

    # Staff cannot charge it by hand either.
    with pytest.raises(DomainError, match="stolen_card"):
        collection.invoice_charge(second, now=later, actor=STAFF, source="staff")
    assert SimulatedCharge.objects.count() == 1

    # A new card: both invoices are collected at once.
    replaced = later + timedelta(days=1)
    add_card(customer, "sim_4242", now=replaced)
    collect(replaced)
    invoice.refresh_from_db()
    second.refresh_from_db()
    assert (invoice.status, second.status) == ("paid", "paid")
    charged = PaymentAttempt.objects.filter(payment_method=method).count()
    assert charged == 1


def test_staff_re_enabling_a_hard_declined_method_resumes_collection():
    invoice = make_charged("sim_9987")  # lost_card
    collect(NOW)
    method = invoice.customer.payment_methods.get()
    later = NOW + timedelta(days=3)
    collection.payment_method_reenable(method, now=later, actor=STAFF)
    method.refresh_from_db()
    invoice.refresh_from_db()
    assert method.unusable_code == "" and method.unusable_at is None
    assert invoice.payment_hold == "" and invoice.next_payment_attempt == later
    with pytest.raises(DomainError, match="not marked unusable"):
        collection.payment_method_reenable(method, now=later, actor=STAFF)
    assert collect(later).attempted == 1  # charged again, as staff said it may be
    method.refresh_from_db()
    assert method.unusable_code == "lost_card"  # and declined again: unusable again


def test_a_soft_decline_leaves_the_method_usable():
    invoice = make_charged("sim_9995")  # insufficient_funds
    collect(NOW)
    assert invoice.customer.payment_methods.get().unusable_code == ""


def test_a_hard_decline_on_a_retry_clears_the_chance_planned_for_the_next_one():
    # The retry planned after a soft decline carries its stated chance (and the log-odds
    # it was recalibrated from); the card then reports stolen: nothing is planned, and
    # the invoice on hold states no chance for a retry that will not come.
    invoice = make_charged("sim_9995")  # insufficient_funds
    collect(NOW)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt_chance is not None
    assert invoice.next_payment_attempt_log_odds is not None
    assert invoice.next_payment_attempt_moved is False
    invoice.customer.payment_methods.update(gateway_reference="sim_9979")  # stolen_card
    collect(invoice.next_payment_attempt)
    invoice.refresh_from_db()
    assert invoice.payment_hold == "hard_decline" and invoice.next_payment_attempt is None
    assert invoice.next_payment_attempt_chance is None
    assert invoice.next_payment_attempt_log_odds is None
    assert invoice.next_payment_attempt_moved is None
    retry = invoice.payment_attempts.get(decline_code="stolen_card")
    assert retry.predicted_chance is not None and retry.predicted_log_odds is not None
    assert retry.planner_moved is False
