"""Subscriptions: creation, the status door, cancel, pause, resume, reactivate, changes
with their prorations, and the bad input of issue 12."""

from datetime import timedelta

import pytest

from customers.errors import DomainError
from customers.models import BalanceTransaction
from invoices.models import Event, Invoice
from subscriptions.changes import subscription_change, subscription_preview_change
from subscriptions.models import PendingItem, Subscription
from subscriptions.services import (
    price_create,
    subscription_cancel,
    subscription_create,
    subscription_mark_unpaid,
    subscription_pause_collection,
    subscription_reactivate,
    subscription_resume,
)
from subscriptions.transitions import ALLOWED, InvalidTransition, subscription_transition

from .factories import NOW, STAFF, make_customer
from .subscription_factories import make_price, make_subscription

S = Subscription.Status


def events_of(subscription):
    return list(
        Event.objects.filter(subscription_id=subscription.pk).order_by("id")
        .values_list("type", flat=True)
    )


def test_create_bills_the_first_period_and_waits_for_payment():
    subscription = make_subscription(make_price(1500), quantity=2)

    invoice = subscription.latest_invoice
    assert subscription.status == S.INCOMPLETE
    assert invoice.status == Invoice.Status.OPEN
    assert invoice.subscription_id == subscription.pk
    assert invoice.billing_reason == "subscription_create"
    assert invoice.total == 3000
    line = invoice.lines.get()
    assert (line.period_start, line.period_end) == (NOW.date(), (NOW + timedelta(days=31)).date())
    assert subscription.current_period_end == NOW.replace(month=4)
    assert events_of(subscription)[0] == "customer.subscription.created"
    # The invoice's own events carry the subscription too.
    assert Event.objects.filter(invoice=invoice, type="invoice.finalized",
                                subscription_id=subscription.pk).exists()


def test_paying_the_first_invoice_activates_it():
    from invoices.collection import collect_due

    subscription = make_subscription(make_price(1500))
    collect_due(now=NOW)

    subscription.refresh_from_db()
    assert subscription.latest_invoice.status == Invoice.Status.PAID
    assert subscription.status == S.ACTIVE
    event = Event.objects.filter(subscription_id=subscription.pk,
                                 type="customer.subscription.updated").order_by("id").last()
    assert event.data["status"] == "active"
    assert event.data["previous_attributes"] == {"status": "incomplete"}


def test_a_first_failure_leaves_it_incomplete_and_a_renewal_failure_makes_it_past_due():
    from invoices.collection import collect_due

    subscription = make_subscription(make_price(1500), token="sim_9995")
    collect_due(now=NOW)
    subscription.refresh_from_db()
    assert subscription.status == S.INCOMPLETE

    active = make_subscription(make_price(1500), trial_period_days=10, token="sim_9995")
    subscription_transition(active, S.ACTIVE, now=NOW, actor=STAFF)
    invoice = _open_invoice_of(active)
    collect_due(now=NOW)
    active.refresh_from_db()
    assert invoice.pk
    assert active.status == S.PAST_DUE


def _open_invoice_of(subscription):
    from invoices.services import invoice_create, invoice_finalize, invoice_line_add

    invoice = invoice_create(customer=subscription.customer, now=NOW, actor=STAFF,
                             collection_method="charge_automatically",
                             subscription_id=subscription.pk,
                             billing_reason="subscription_cycle")
    invoice_line_add(invoice, description="Renewal", unit_amount=1500)
    return invoice_finalize(invoice, now=NOW, actor=STAFF)


def test_send_invoice_subscription_is_active_at_once():
    subscription = make_subscription(make_price(1500), collection_method="send_invoice",
                                      days_until_due=14, token=None)
    assert subscription.status == S.ACTIVE
    assert subscription.latest_invoice.due_date == (NOW + timedelta(days=14)).date()


def test_trial():
    subscription = make_subscription(make_price(1500), trial_period_days=14)
    assert subscription.status == S.TRIALING
    assert subscription.latest_invoice is None
    assert subscription.current_period_end == NOW + timedelta(days=14)
    assert subscription.notice_at == NOW + timedelta(days=11)
    assert not Invoice.objects.filter(subscription_id=subscription.pk).exists()


def test_cancel_now_and_twice():
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    subscription_cancel(subscription, now=NOW, actor=STAFF, reason="cancellation_requested",
                        feedback="too_expensive", comment="Going elsewhere")
    assert subscription.status == S.CANCELED
    assert subscription.canceled_at == NOW and subscription.ended_at == NOW
    assert subscription.cancellation_feedback == "too_expensive"
    assert events_of(subscription)[-1] == "customer.subscription.deleted"

    with pytest.raises(DomainError, match="already canceled"):
        subscription_cancel(subscription, now=NOW, actor=STAFF)
    assert events_of(subscription).count("customer.subscription.deleted") == 1


def test_cancel_now_with_proration_credits_the_unused_time():
    subscription = make_subscription(make_price(3100, interval="day", count=31))
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    subscription_cancel(subscription, now=NOW + timedelta(days=21), actor=STAFF, prorate=True)
    entry = BalanceTransaction.objects.get(customer=subscription.customer)
    assert entry.amount == -1000  # 10 of 31 days unused
    subscription.customer.refresh_from_db()
    assert subscription.customer.balance == -1000


def test_cancel_at_period_end_then_reactivate():
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    subscription_cancel(subscription, now=NOW, actor=STAFF, at_period_end=True)
    assert subscription.status == S.TRIALING
    assert subscription.cancel_at_period_end
    assert subscription.cancel_at == subscription.current_period_end
    with pytest.raises(DomainError, match="already set to cancel"):
        subscription_cancel(subscription, now=NOW, actor=STAFF, at_period_end=True)

    subscription_reactivate(subscription, now=NOW, actor=STAFF)
    subscription.refresh_from_db()
    assert not subscription.cancel_at_period_end and subscription.cancel_at is None
    with pytest.raises(DomainError, match="not set to cancel"):
        subscription_reactivate(subscription, now=NOW, actor=STAFF)


def test_pause_and_resume():
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    subscription_pause_collection(subscription, now=NOW, actor=STAFF, behavior="void",
                                  resumes_at=NOW + timedelta(days=30))
    assert subscription.status == S.PAUSED and subscription.pause_collection == "void"
    assert events_of(subscription)[-1] == "customer.subscription.paused"
    with pytest.raises(DomainError, match="already paused"):
        subscription_pause_collection(subscription, now=NOW, actor=STAFF, behavior="void")

    subscription_resume(subscription, now=NOW, actor=STAFF)
    assert subscription.status == S.ACTIVE and subscription.pause_collection == ""
    assert events_of(subscription)[-1] == "customer.subscription.resumed"
    with pytest.raises(DomainError, match="Only a paused"):
        subscription_resume(subscription, now=NOW, actor=STAFF)


@pytest.mark.parametrize("behavior,resumes_at,message", [
    ("sleep", None, "Choose how invoices"),
    ("void", NOW - timedelta(days=1), "must be in the future"),
])
def test_pause_refuses_bad_input(behavior, resumes_at, message):
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    with pytest.raises(DomainError, match=message):
        subscription_pause_collection(subscription, now=NOW, actor=STAFF, behavior=behavior,
                                      resumes_at=resumes_at)
    subscription.refresh_from_db()
    assert subscription.status == S.TRIALING


def test_mark_unpaid_only_from_past_due():
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    with pytest.raises(DomainError, match="Only a past-due"):
        subscription_mark_unpaid(subscription, now=NOW, actor=STAFF)
    subscription_transition(subscription, S.PAST_DUE, now=NOW, actor=STAFF)
    subscription_mark_unpaid(subscription, now=NOW, actor=STAFF)
    assert subscription.status == S.UNPAID


def test_every_forbidden_transition_is_refused():
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    for current, allowed in ALLOWED.items():
        for target in set(S.values) - allowed - {current}:
            Subscription.objects.filter(pk=subscription.pk).update(status=current)
            subscription.status = current
            with pytest.raises(InvalidTransition):
                subscription_transition(subscription, target, now=NOW, actor=STAFF)
            subscription.refresh_from_db()
            assert subscription.status == current


def test_the_door_refuses_a_stale_status():
    subscription = make_subscription(make_price(1500), trial_period_days=5)
    stale = Subscription.objects.get(pk=subscription.pk)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    with pytest.raises(InvalidTransition, match="changed by someone else"):
        subscription_transition(stale, S.CANCELED, now=NOW, actor=STAFF)
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE


# --- changes and prorations --------------------------------------------------------------


def _active_daily(amount=3000, quantity=1):
    """Active, period of 30 days from NOW, paid."""
    price = make_price(amount, interval="day", count=30, name="Team")
    subscription = make_subscription(price, quantity=quantity)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    return subscription, price


def test_preview_shows_credit_and_charge_lines_with_their_periods():
    subscription, price = _active_daily(3000)
    bigger = make_price(6000, interval="day", count=30, product=price.product)
    at = NOW + timedelta(days=10)

    preview = subscription_preview_change(subscription, items=[(bigger, 1)], now=at)

    (credit,) = preview.proration.credits
    (charge,) = preview.proration.charges
    assert credit.amount == 2000 and charge.amount == 4000  # 20 of 30 days left
    assert (credit.start, credit.end) == (at, subscription.current_period_end)
    assert (charge.start, charge.end) == (at, subscription.current_period_end)
    # the upcoming invoice: the credit and the charge as two lines, then the next period
    assert [(line.amount, line.proration) for line in preview.next_invoice_lines] == [
        (-2000, True), (4000, True), (6000, False)]
    assert preview.next_invoice_amount == -2000 + 4000 + 6000
    assert not PendingItem.objects.exists()  # a preview changes nothing
    assert subscription.items.get().price == price


def test_proration_is_to_the_second():
    subscription, price = _active_daily(2_592_000)  # 1 minor unit per second of 30 days
    bigger = make_price(5_184_000, interval="day", count=30, product=price.product)
    at = NOW + timedelta(days=29, hours=23, minutes=59, seconds=1)  # 59 s left
    preview = subscription_preview_change(subscription, items=[(bigger, 1)], now=at)
    assert preview.proration.credits[0].amount == 59
    assert preview.proration.charges[0].amount == 118


def test_change_create_prorations_puts_the_charge_on_the_next_invoice():
    subscription, price = _active_daily(3000)
    at = NOW + timedelta(days=10)
    subscription_change(subscription, items=[(price, 3)], now=at, actor=STAFF)

    assert subscription.items.get().quantity == 3
    credit, charge = PendingItem.objects.filter(subscription=subscription).order_by("id")
    assert credit.amount == -2000  # 1 x 3000 x 20/30, the unused time
    assert charge.amount == 6000  # 3 x 3000 x 20/30
    assert (credit.period_start, charge.period_end) == (at, subscription.current_period_end)
    assert credit.invoice is None and charge.invoice is None
    subscription.customer.refresh_from_db()
    assert subscription.customer.balance == 0  # the credit is a line, not a balance entry
    event = Event.objects.filter(subscription_id=subscription.pk).order_by("id").last()
    assert event.type == "customer.subscription.updated"
    assert event.data["items"] == [{"price": price.pk, "quantity": 3}]
    assert event.data["previous_attributes"]["items"] == [{"price": price.pk, "quantity": 1}]


def test_change_always_invoice_invoices_now():
    subscription, price = _active_daily(3000)
    at = NOW + timedelta(days=10)
    subscription_change(subscription, items=[(price, 2)], now=at, actor=STAFF,
                        proration_behavior="always_invoice")
    invoice = Invoice.objects.filter(subscription_id=subscription.pk,
                                     billing_reason="subscription_update").get()
    assert invoice.status == Invoice.Status.OPEN
    lines = list(invoice.lines.order_by("position"))
    assert [(line.amount, line.proration) for line in lines] == [(-2000, True), (4000, True)]
    assert lines[0].period_start == at.date()
    assert invoice.total == 2000
    assert invoice.starting_balance == 0
    assert invoice.amount_due == 2000
    assert not PendingItem.objects.exists()


def test_change_without_proration():
    subscription, price = _active_daily(3000)
    subscription_change(subscription, items=[(price, 2)], now=NOW + timedelta(days=3),
                        actor=STAFF, proration_behavior="none")
    assert not PendingItem.objects.exists()
    assert not BalanceTransaction.objects.filter(customer=subscription.customer).exists()


# --- bad input (issue 12) ------------------------------------------------------------------


def _refused(message, **kwargs):
    before = Subscription.objects.count(), Invoice.objects.count(), Event.objects.count()
    with pytest.raises(DomainError, match=message):
        subscription_create(now=NOW, actor=STAFF, **kwargs)
    assert (Subscription.objects.count(), Invoice.objects.count(),
            Event.objects.count()) == before


def test_price_in_another_currency_than_the_customer():
    _refused("is in USD but", customer=make_customer(currency="EUR"),
             items=[(make_price(1000, currency="USD"), 1)])


@pytest.mark.parametrize("quantity", [0, -1])
def test_zero_or_negative_quantity(quantity):
    _refused("Quantity must be", customer=make_customer(), items=[(make_price(), quantity)])


@pytest.mark.parametrize("interval,count", [("month", 13), ("year", 2), ("week", 53),
                                            ("day", 366), ("fortnight", 1)])
def test_interval_beyond_a_year(interval, count):
    from subscriptions.models import Price, Product

    product = Product.objects.create(name="X", created_at=NOW)
    with pytest.raises(DomainError, match="one year|Unknown billing interval"):
        price_create(product=product, currency="EUR", unit_amount=100, interval=interval,
                     interval_count=count, now=NOW, actor=STAFF)
    assert not Price.objects.exists()


def test_archived_price_on_a_new_subscription():
    price = make_price()
    price.active = False
    price.save()
    _refused("archived", customer=make_customer(), items=[(price, 1)])


def test_trial_end_in_the_past():
    _refused("in the past", customer=make_customer(), items=[(make_price(), 1)],
             trial_end=NOW - timedelta(hours=1))


def test_change_to_a_canceled_subscription():
    subscription, price = _active_daily(3000)
    subscription_cancel(subscription, now=NOW, actor=STAFF)
    count = Event.objects.count()
    with pytest.raises(DomainError, match="canceled: it cannot be changed"):
        subscription_change(subscription, items=[(price, 2)], now=NOW, actor=STAFF)
    assert subscription.items.get().quantity == 1
    assert Event.objects.count() == count


def test_an_archived_price_keeps_its_subscriptions():
    subscription, price = _active_daily(3000)
    price.active = False
    price.save()
    subscription_change(subscription, items=[(price, 2)], now=NOW + timedelta(days=1),
                        actor=STAFF)
    assert subscription.items.get().quantity == 2


def test_a_one_off_price_on_an_invoice_line():
    from subscriptions.services import invoice_line_add_price

    from .factories import make_draft, make_tax_rate

    rate = make_tax_rate("20")
    setup = make_price(25_00, type="one_time", nickname="Onboarding", tax_rates=[rate])
    draft = make_draft(lines=())
    line = invoice_line_add_price(draft, price=setup, quantity=2)
    draft.refresh_from_db()
    assert (line.description, line.quantity, line.unit_amount) == ("Onboarding", 2, 25_00)
    assert draft.total == 60_00
    usd = make_price(25_00, currency="USD", type="one_time")
    with pytest.raises(DomainError, match="this invoice is in EUR"):
        invoice_line_add_price(draft, price=usd)
    assert draft.lines.count() == 1
