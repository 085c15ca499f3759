"""Renewals raced by two workers on PostgreSQL, each with its own connection: exactly one
invoice per subscription and period."""

import pytest
from django.db import IntegrityError, transaction

from invoices.models import Invoice
from subscriptions import renewals
from subscriptions.models import Subscription, SubscriptionInvoice
from subscriptions.transitions import subscription_transition

from .factories import NOW, STAFF, make_customer
from .subscription_factories import make_price, make_subscription
from .test_concurrency_pg import POSTGRES_CONNECTIONS, run_together, unexpected_errors

pytestmark = POSTGRES_CONNECTIONS


def _due_subscriptions(count):
    price = make_price(1500)
    customer = make_customer()
    subscriptions = []
    for _n in range(count):
        subscription = make_subscription(price, customer=customer, token=None,
                                         collection_method="send_invoice", days_until_due=7)
        subscriptions.append(subscription)
    return subscriptions


def test_two_sweeps_at_once_bill_each_period_once():
    subscriptions = _due_subscriptions(40)
    end = subscriptions[0].current_period_end

    outcomes = run_together(
        lambda: renewals.renewals_run(now=end, batch_size=7),
        lambda: renewals.renewals_run(now=end, batch_size=7),
    )

    assert not unexpected_errors(outcomes)
    renewed = sum(result.get("renewed", 0) for _kind, result in outcomes)
    assert renewed == 40
    cycle = Invoice.objects.filter(billing_reason="subscription_cycle")
    assert cycle.count() == 40
    assert set(cycle.values_list("subscription_id", flat=True)) == {s.pk for s in subscriptions}
    assert all(s.current_period_end > end for s in Subscription.objects.all())


def test_two_workers_on_the_same_batch_bill_it_once():
    subscriptions = _due_subscriptions(30)
    end = subscriptions[0].current_period_end
    ids = [s.pk for s in subscriptions]

    outcomes = run_together(
        lambda: renewals.renewals_bulk(ids, now=end),
        lambda: renewals.renewals_bulk(ids, now=end),
    )

    assert not unexpected_errors(outcomes)
    assert sum(result.get("renewed", 0) for _kind, result in outcomes) == 30
    assert SubscriptionInvoice.objects.filter(billing_reason="subscription_cycle").count() == 30


def test_the_constraint_refuses_a_second_invoice_for_a_period():
    (subscription,) = _due_subscriptions(1)
    subscription_transition(subscription, Subscription.Status.ACTIVE, now=NOW, actor=STAFF)
    renewals.renewals_run(now=subscription.current_period_end)
    billed = SubscriptionInvoice.objects.get(billing_reason="subscription_cycle")
    other = Invoice.objects.create(customer=subscription.customer, currency="EUR",
                                   created_at=NOW, subscription_id=subscription.pk)
    with pytest.raises(IntegrityError), transaction.atomic():
        SubscriptionInvoice.objects.create(
            subscription=subscription, invoice=other, billing_reason="subscription_cycle",
            period_start=billed.period_start, period_end=billed.period_end,
        )
