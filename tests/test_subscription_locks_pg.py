"""Lock order between the renewal sweep, staff operations on a subscription, and payments
(two real PostgreSQL connections).

Whoever waits takes the customer before the subscription: a payment locks the invoice
and its customer, then (invoice.paid) the subscription; a staff cancel or change locks
the customer, then the subscription. The sweep, which takes the subscriptions first,
never waits: it claims each due subscription with its customer, SKIP LOCKED, and leaves
the ones held elsewhere for the next tick."""

import threading
import time

from django.db import transaction

from customers.models import Customer
from invoices.models import Invoice
from subscriptions import renewals
from subscriptions.models import Subscription
from subscriptions.services import (
    subscription_cancel,
    subscription_lock,
    subscription_pause_collection,
)
from subscriptions.transitions import subscription_transition

from .factories import NOW, STAFF
from .subscription_factories import make_price, make_subscription
from .test_concurrency_pg import POSTGRES_CONNECTIONS, run_together

pytestmark = POSTGRES_CONNECTIONS
S = Subscription.Status


def _due():
    subscription = make_subscription(make_price(3000), token=None,
                                     collection_method="send_invoice", days_until_due=7)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    return subscription


def _cycle_invoices(subscription):
    return Invoice.objects.filter(subscription_id=subscription.pk,
                                  billing_reason="subscription_cycle").count()


def test_a_payment_holding_the_customer_and_the_sweep_do_not_deadlock():
    """A staff payment on the subscription's invoice holds the customer (invoice_lock),
    then locks the subscription (invoice.paid reactivates it). The sweep used to lock the
    subscription and wait for the customer (the renewal invoice's foreign key): a
    deadlock, one of them aborted."""
    subscription = _due()
    end = subscription.current_period_end
    customer_held = threading.Event()

    def payment():
        with transaction.atomic():
            Customer.objects.select_for_update().get(pk=subscription.customer_id)
            customer_held.set()
            time.sleep(1.5)  # the sweep runs meanwhile
            Subscription.objects.select_for_update().get(pk=subscription.pk)
            return "paid"

    def sweep():
        customer_held.wait(10)
        time.sleep(0.2)
        return renewals.renewals_run(now=end)

    outcomes = run_together(payment, sweep, lock_timeout="20s")

    assert [kind for kind, _value in outcomes] == ["ok", "ok"], outcomes
    assert outcomes[1][1].get("renewed", 0) == 0  # held elsewhere: left for the next tick
    assert renewals.renewals_run(now=end)["renewed"] == 1
    assert _cycle_invoices(subscription) == 1


def test_a_staff_cancel_waits_for_the_sweep_batch_and_neither_deadlocks():
    """The sweep holds the subscription and its customer for its batch; a staff cancel
    with a prorated credit (which locks the customer to credit its balance) waits for the
    batch, then cancels the renewed subscription."""
    subscription = _due()
    end = subscription.current_period_end
    batch_held = threading.Event()

    def sweep():
        with transaction.atomic():
            counts = renewals.renewals_bulk([subscription.pk], now=end)
            batch_held.set()
            time.sleep(1.5)
        return counts

    def cancel():
        batch_held.wait(10)
        subscription_cancel(subscription, now=end + (end - NOW) / 2, actor=STAFF,
                            prorate=True)
        return "canceled"

    outcomes = run_together(sweep, cancel, lock_timeout="20s")

    assert [kind for kind, _value in outcomes] == ["ok", "ok"], outcomes
    assert outcomes[0][1]["renewed"] == 1
    subscription.refresh_from_db()
    assert subscription.status == S.CANCELED
    assert _cycle_invoices(subscription) == 1
    assert Customer.objects.get(pk=subscription.customer_id).balance < 0  # half a period


def test_the_sweep_skips_a_subscription_a_staff_cancel_holds():
    subscription = _due()
    end = subscription.current_period_end
    held, swept = threading.Event(), threading.Event()

    def cancel():
        with transaction.atomic():
            subscription_lock(subscription)
            held.set()
            swept.wait(10)
            subscription_cancel(subscription, now=end, actor=STAFF, prorate=True)
        return "canceled"

    def sweep():
        held.wait(10)
        try:
            return renewals.renewals_run(now=end)
        finally:
            swept.set()

    outcomes = run_together(cancel, sweep, lock_timeout="20s")

    assert [kind for kind, _value in outcomes] == ["ok", "ok"], outcomes
    assert outcomes[1][1].get("renewed", 0) == 0
    subscription.refresh_from_db()
    assert subscription.status == S.CANCELED
    assert renewals.renewals_run(now=end).get("renewed", 0) == 0
    assert _cycle_invoices(subscription) == 0


def test_two_sweeps_writing_off_paused_renewals_of_one_customer_do_not_deadlock():
    """Collection paused with mark_uncollectible: the renewal is finalized and written
    off inside the batch, which locks the customer FOR UPDATE. Two sweeps (two workers, or
    the sweep's two threads) each holding one of the customer's paused subscriptions used
    to both hold the customer FOR SHARE, then both wait to lock it for update: a
    deadlock, one batch aborted. The sweep now claims such a customer for update at
    once, SKIP LOCKED: the other sweep leaves it to the next tick."""
    first = _due()
    second = make_subscription(make_price(2000), customer=first.customer, token=None,
                               collection_method="send_invoice", days_until_due=7)
    subscription_transition(second, S.ACTIVE, now=NOW, actor=STAFF)
    for subscription in (first, second):
        subscription_pause_collection(subscription, now=NOW, actor=STAFF,
                                      behavior="mark_uncollectible")
    end = first.current_period_end
    both_claimed = threading.Barrier(2, timeout=3)
    write_off = renewals._paused_invoice

    def waiting_write_off(*args):
        try:  # each sweep has claimed its batch: now both write off
            both_claimed.wait()
        except threading.BrokenBarrierError:
            pass  # the other sweep had nothing to write off
        return write_off(*args)

    def sweep(subscription):
        return lambda: renewals.renewals_bulk([subscription.pk], now=end)

    renewals._paused_invoice = waiting_write_off
    try:
        outcomes = run_together(sweep(first), sweep(second), lock_timeout="20s")
    finally:
        renewals._paused_invoice = write_off

    assert [kind for kind, _value in outcomes] == ["ok", "ok"], outcomes
    assert sum(value.get("renewed", 0) for _kind, value in outcomes) >= 1
    renewals.renewals_run(now=end)  # the next tick: what a sweep left
    for subscription in (first, second):
        (invoice,) = Invoice.objects.filter(subscription_id=subscription.pk,
                                            billing_reason="subscription_cycle")
        assert invoice.status == "uncollectible"
