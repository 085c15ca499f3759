"""Renewals, trials, incomplete expiry, notices, month ends and DST, what happens after
the last retry, and test clocks."""

from datetime import UTC, datetime, timedelta

import pytest

from automations.models import BillingSettings, RetryPolicy
from customers.models import TestClock
from invoices.models import Event, Invoice
from subscriptions import renewals
from subscriptions.changes import subscription_change
from subscriptions.models import PendingItem, Subscription
from subscriptions.periods import add_months, period_end
from subscriptions.services import (
    subscription_cancel,
    subscription_pause_collection,
)
from subscriptions.transitions import subscription_transition

from .factories import NOW, STAFF, add_card, make_customer
from .subscription_factories import make_price, make_subscription

S = Subscription.Status


def _sweep(at):
    return renewals.subscriptions_sweep(now=at)


def _invoices(subscription, reason=None):
    invoices = Invoice.objects.filter(subscription_id=subscription.pk).order_by("created_at", "id")
    return list(invoices.filter(billing_reason=reason) if reason else invoices)


def _active(price=None, **fields):
    subscription = make_subscription(price or make_price(1500), **fields)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    return subscription


# --- periods ---------------------------------------------------------------------------------


def test_month_ends_as_stripe():
    anchor = datetime(2027, 1, 31, 10, 0, tzinfo=UTC)
    ends = [period_end(anchor, "month", 1, n) for n in range(1, 5)]
    assert [end.date().isoformat() for end in ends] == [
        "2027-02-28", "2027-03-31", "2027-04-30", "2027-05-31"]
    leap = datetime(2028, 1, 31, tzinfo=UTC)
    assert add_months(leap, 1).day == 29
    assert period_end(datetime(2028, 2, 29, tzinfo=UTC), "year", 1, 1).date().isoformat() == (
        "2029-02-28")


def test_periods_are_utc_instants_across_dst():
    # Paris leaves summer time on 2026-10-25: a monthly period is still anchored on UTC.
    anchor = datetime(2026, 9, 25, 22, 30, tzinfo=UTC)  # 00:30 in Paris on Sep 26
    assert period_end(anchor, "month", 1, 1) == datetime(2026, 10, 25, 22, 30, tzinfo=UTC)
    assert period_end(anchor, "month", 1, 2) == datetime(2026, 11, 25, 22, 30, tzinfo=UTC)
    # A daily period over the change is 24 hours, not a local calendar day of 25.
    assert period_end(anchor, "day", 30, 1) - anchor == timedelta(days=30)


# --- renewals ----------------------------------------------------------------------------------


def test_renewal_creates_one_invoice_and_advances_the_period():
    subscription = _active(quantity=2)
    end = subscription.current_period_end
    assert _sweep(end - timedelta(seconds=1)).get("renewed", 0) == 0

    counts = _sweep(end)
    assert counts["renewed"] == 1
    subscription.refresh_from_db()
    assert subscription.current_period_start == end
    assert subscription.current_period_end == add_months(NOW, 2)
    (invoice,) = _invoices(subscription, "subscription_cycle")
    assert invoice.status == Invoice.Status.DRAFT and invoice.auto_advance
    assert invoice.total == 3000 and invoice.amount_due == 3000
    assert invoice.automatically_finalizes_at == end + timedelta(hours=1)
    line = invoice.lines.get()
    assert (line.period_start, line.period_end) == (end.date(), add_months(NOW, 2).date())
    assert subscription.latest_invoice_id == invoice.pk
    assert Event.objects.filter(invoice=invoice, type="invoice.created",
                                subscription_id=subscription.pk).exists()
    updated = Event.objects.filter(subscription_id=subscription.pk,
                                   type="customer.subscription.updated").order_by("id").last()
    assert updated.data["previous_attributes"]["current_period_end"] == end.isoformat()

    assert _sweep(end + timedelta(minutes=5)).get("renewed", 0) == 0  # again: nothing
    assert len(_invoices(subscription, "subscription_cycle")) == 1


def test_renewal_carries_pending_prorations_and_tax():
    from .factories import make_tax_rate

    rate = make_tax_rate("20")
    price = make_price(3000, interval="day", count=30, tax_rates=[rate])
    subscription = _active(price)
    subscription_change(subscription, items=[(price, 2)], now=NOW + timedelta(days=15),
                        actor=STAFF)
    _sweep(subscription.current_period_end)
    (invoice,) = _invoices(subscription, "subscription_cycle")
    lines = list(invoice.lines.order_by("position"))
    # the next period, then the credit for the unused half and the charge for 2 seats
    assert [(line.amount, line.proration) for line in lines] == [
        (6000, False), (-1500, True), (3000, True)]
    assert [line.tax_amount for line in lines] == [1200, -300, 600]
    assert invoice.tax == 1500 and invoice.total == 9000
    assert {item.invoice_id for item in PendingItem.objects.all()} == {invoice.pk}


def test_trial_ends_active_with_an_invoice():
    subscription = make_subscription(make_price(1500), trial_period_days=14)
    _sweep(NOW + timedelta(days=11))
    assert Event.objects.filter(subscription_id=subscription.pk,
                                type="customer.subscription.trial_will_end").count() == 1
    _sweep(NOW + timedelta(days=14))
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE
    assert subscription.current_period_end == add_months(NOW + timedelta(days=14), 1)
    assert len(_invoices(subscription)) == 1


def test_cancel_at_period_end_happens_at_the_renewal():
    subscription = _active()
    subscription_cancel(subscription, now=NOW, actor=STAFF, at_period_end=True)
    counts = _sweep(subscription.current_period_end)
    subscription.refresh_from_db()
    assert counts["canceled"] == 1
    assert subscription.status == S.CANCELED
    assert subscription.ended_at == add_months(NOW, 1)
    assert _invoices(subscription, "subscription_cycle") == []


def test_unpaid_renewals_are_drafts_not_collected():
    subscription = _active()
    subscription_transition(subscription, S.PAST_DUE, now=NOW, actor=STAFF)
    subscription_transition(subscription, S.UNPAID, now=NOW, actor=STAFF)
    _sweep(subscription.current_period_end)
    (invoice,) = _invoices(subscription, "subscription_cycle")
    assert invoice.status == Invoice.Status.DRAFT and not invoice.auto_advance


@pytest.mark.parametrize("behavior,status", [
    ("keep_as_draft", "draft"), ("mark_uncollectible", "uncollectible"), ("void", "void"),
])
def test_paused_renewals_follow_the_pause_behavior(behavior, status):
    subscription = _active()
    subscription_pause_collection(subscription, now=NOW, actor=STAFF, behavior=behavior)
    _sweep(subscription.current_period_end)
    (invoice,) = _invoices(subscription, "subscription_cycle")
    assert invoice.status == status


def test_pause_ends_on_its_date():
    subscription = _active()
    subscription_pause_collection(subscription, now=NOW, actor=STAFF, behavior="void",
                                  resumes_at=NOW + timedelta(days=3))
    assert _sweep(NOW + timedelta(days=3))["resumed"] == 1
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE


def test_incomplete_expires_after_23_hours():
    subscription = make_subscription(make_price(1500), token="sim_9995")
    assert _sweep(NOW + timedelta(hours=22, minutes=59)).get("incomplete_expired", 0) == 0
    assert _sweep(NOW + timedelta(hours=23))["incomplete_expired"] == 1
    subscription.refresh_from_db()
    assert subscription.status == S.INCOMPLETE_EXPIRED
    assert subscription.latest_invoice.status == Invoice.Status.VOID
    assert Event.objects.filter(subscription_id=subscription.pk,
                                type="customer.subscription.deleted").exists()


def test_upcoming_renewal_of_a_yearly_subscription():
    subscription = _active(make_price(12000, interval="year"))
    # The first period was created before activation; renew once to get the notice.
    _sweep(subscription.current_period_end)
    subscription.refresh_from_db()
    assert subscription.notice_at == subscription.current_period_end - timedelta(days=7)
    _sweep(subscription.notice_at)
    upcoming = Event.objects.filter(subscription_id=subscription.pk, type="invoice.upcoming")
    assert upcoming.count() == 1


# --- after the last retry -------------------------------------------------------------------


def _last_retry_fails(action, segment="", policy_action=""):
    """A monthly subscription whose renewal's payment fails with no retry left."""
    settings = BillingSettings.load()
    settings.subscription_after_last_retry = action
    settings.save()
    policy = settings.default_retry_policy
    policy.mode, policy.custom_schedule = RetryPolicy.Mode.CUSTOM, [1]
    policy.save()
    if policy_action:
        RetryPolicy.objects.create(name="VIP", mode="custom", custom_schedule=[1],
                                   customer_segments=["vip"],
                                   subscription_after_last_retry=policy_action)
    from automations.sweeps import collect_payments
    from invoices.services import invoice_record_payment
    from invoices.sweeps import finalize_due_drafts

    customer = make_customer(segment=segment)
    add_card(customer, "sim_9995")
    subscription = make_subscription(make_price(1500), customer=customer)
    first = subscription.latest_invoice
    invoice_record_payment(first, amount=first.amount_remaining, method="bank_transfer",
                           now=NOW, actor=STAFF)
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE
    end = subscription.current_period_end
    _sweep(end)
    finalize_due_drafts(now=end + timedelta(hours=1))
    collect_payments(now=end + timedelta(hours=1))
    subscription.refresh_from_db()
    assert subscription.status == S.PAST_DUE  # the first failure
    collect_payments(now=end + timedelta(days=3))
    subscription.refresh_from_db()
    return subscription


@pytest.mark.parametrize("action,status", [
    ("cancel", "canceled"), ("mark_unpaid", "unpaid"), ("pause", "paused"),
    ("leave_past_due", "past_due"),
])
def test_after_the_last_retry_the_settings_decide(action, status):
    subscription = _last_retry_fails(action)
    assert subscription.status == status
    if action == "cancel":
        assert subscription.cancellation_reason == "payment_failed"


def test_a_named_policy_overrides_the_settings_for_its_segment():
    subscription = _last_retry_fails("leave_past_due", segment="vip", policy_action="cancel")
    assert subscription.status == S.CANCELED


def test_paying_later_returns_it_to_active():
    from invoices.services import invoice_record_payment

    subscription = _last_retry_fails("mark_unpaid")
    invoice = _invoices(subscription, "subscription_cycle")[0]
    invoice_record_payment(invoice, amount=invoice.amount_remaining, method="bank_transfer",
                           now=NOW + timedelta(days=40), actor=STAFF)
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE


# --- test clocks ------------------------------------------------------------------------------


def test_a_clock_advanced_12_months_renews_and_collects_12_times_in_order():
    from automations.clocks import clock_advance

    clock = TestClock.objects.create(name="year", frozen_time=NOW)
    customer = make_customer(test_clock=clock)
    add_card(customer, "sim_4242")
    subscription = make_subscription(make_price(1500), customer=customer)
    clock_advance(clock, to=NOW + timedelta(days=1))
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE

    result = clock_advance(clock, to=add_months(NOW, 12) + timedelta(hours=2))

    renewals_ = _invoices(subscription, "subscription_cycle")
    assert result["subscriptions"]["renewed"] == 12
    assert len(renewals_) == 12
    assert all(invoice.status == Invoice.Status.PAID for invoice in renewals_)
    assert [i.created_at for i in renewals_] == [add_months(NOW, n) for n in range(1, 13)]
    assert [i.paid_at for i in renewals_] == sorted(i.paid_at for i in renewals_)
    numbers = [i.number for i in renewals_]
    assert numbers == sorted(numbers)
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE
    assert subscription.current_period_end == add_months(NOW, 13)


def test_the_customer_paying_on_the_invoice_page_returns_it_to_active():
    from customers.actors import Actor
    from invoices.collection import invoice_charge

    subscription = _last_retry_fails("mark_unpaid")
    invoice = _invoices(subscription, "subscription_cycle")[0]
    invoice_charge(invoice, now=NOW + timedelta(days=40), actor=Actor.customer(),
                   source="customer", gateway_token="sim_4242", card_brand="visa",
                   card_last4="4242")
    subscription.refresh_from_db()
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert subscription.status == S.ACTIVE
