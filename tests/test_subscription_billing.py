"""Issue 12, what remained: proration credits as negative lines (and negative invoices
credited to the balance), the subscription's default payment method in collection,
moving a subscription to another interval, and prices with currency options."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import IntegrityError, transaction
from django.urls import reverse

from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import Customer
from invoices import collection
from invoices.models import Event, Invoice, InvoiceLine, PaymentAttempt
from invoices.services import invoice_finalize, invoice_line_add, invoice_void
from invoices.totals import invoice_summary
from subscriptions import renewals
from subscriptions.changes import subscription_change, subscription_preview_change
from subscriptions.models import PendingItem, PriceCurrencyOption, Subscription
from subscriptions.periods import add_months
from subscriptions.services import (
    price_currency_options_set,
    subscription_pause_collection,
)
from subscriptions.transitions import subscription_transition

from .factories import NOW, STAFF, add_card, make_customer, make_draft, make_tax_rate
from .subscription_factories import make_price, make_subscription

pytestmark = pytest.mark.django_db
S = Subscription.Status


def _balance(customer) -> int:
    return Customer.objects.get(pk=customer.pk).balance


def _rows(invoice):
    return [(row.kind, row.amount) for row in invoice_summary(invoice)]


# --- 1. proration credits: negative lines, negative invoices ---------------------------------


def test_a_normal_line_cannot_be_negative_and_nothing_changes():
    invoice = make_draft()
    with pytest.raises(DomainError, match="cannot be negative"):
        invoice_line_add(invoice, description="Refund", unit_amount=-500)
    assert invoice.lines.count() == 1
    invoice.refresh_from_db()
    assert invoice.total == 10000


def test_a_proration_credit_takes_no_discount_of_its_own():
    invoice = make_draft()
    with pytest.raises(DomainError, match="no discount"):
        invoice_line_add(invoice, description="Unused time", unit_amount=-500, proration=True,
                         discount_amount=100)
    assert invoice.lines.count() == 1


def test_the_database_refuses_a_negative_line_that_is_not_a_proration():
    invoice = make_draft()
    with pytest.raises(IntegrityError), transaction.atomic():
        InvoiceLine.objects.create(invoice=invoice, description="x", unit_amount=-1)


def _negative_draft(customer, tax_rates=(), **fields):
    invoice = make_draft(customer, lines=[(1, 2000)], tax_rates=tax_rates, **fields)
    invoice_line_add(invoice, description="Unused time", unit_amount=-5000, proration=True,
                     tax_rates=tax_rates)
    invoice.refresh_from_db()
    return invoice


def test_a_negative_invoice_is_credited_to_the_balance_and_nothing_is_due():
    customer = make_customer()
    invoice = _negative_draft(customer)
    assert (invoice.total, invoice.amount_due) == (-3000, 0)
    assert _rows(invoice)[-3:] == [("total", -3000), ("credited_to_balance", 3000),
                                   ("amount_due", 0)]

    invoice_finalize(invoice, now=NOW, actor=STAFF)

    assert invoice.status == Invoice.Status.PAID
    assert (invoice.total, invoice.amount_due, invoice.amount_remaining) == (-3000, 0, 0)
    assert (invoice.starting_balance, invoice.ending_balance) == (0, -3000)
    assert _balance(customer) == -3000
    assert _rows(invoice)[-3:] == [("total", -3000), ("credited_to_balance", 3000),
                                   ("amount_due", 0)]


def test_a_negative_invoice_first_pays_off_a_debt():
    customer = make_customer()
    balance_transaction_create(customer=customer, amount=1000, type="adjustment", now=NOW,
                               actor=STAFF)
    invoice = invoice_finalize(_negative_draft(customer), now=NOW, actor=STAFF)
    assert (invoice.starting_balance, invoice.ending_balance, invoice.amount_due) == (
        1000, -2000, 0)
    assert _balance(customer) == -2000
    assert _rows(invoice)[-4:] == [("total", -3000), ("previous_balance", 1000),
                                   ("credited_to_balance", 2000), ("amount_due", 0)]


def test_a_negative_invoice_with_tax_and_a_percent_discount():
    rate = make_tax_rate("20")
    customer = make_customer()
    invoice = _negative_draft(customer, tax_rates=[rate], discount_percent=Decimal("10"))
    lines = list(invoice.lines.order_by("position"))
    # nets 1,800 and -4,500; VAT once on -2,700: -540, shared back 360 and -900
    assert [(line.amount, line.discount_total, line.tax_amount) for line in lines] == [
        (2000, 200, 360), (-5000, -500, -900)]
    assert (invoice.subtotal, invoice.total_discount_amount, invoice.tax, invoice.total) == (
        -3000, -300, -540, -3240)
    invoice_finalize(invoice, now=NOW, actor=STAFF)
    assert _balance(customer) == -3240 and invoice.amount_due == 0


def test_an_amount_discount_never_takes_an_invoice_below_zero():
    customer = make_customer()
    invoice = make_draft(customer, lines=[(1, 6000)], discount_amount=5000)
    invoice_line_add(invoice, description="Unused time", unit_amount=-2000, proration=True)
    invoice.refresh_from_db()
    assert invoice.total == 0  # 6,000 - 2,000 = 4,000 left to discount, not 5,000


def test_a_negative_invoice_is_paid_at_once_and_keeps_its_credit():
    from invoices.credit_notes import CreditLine, credit_note_create

    customer = make_customer()
    invoice = invoice_finalize(_negative_draft(customer), now=NOW, actor=STAFF)
    assert invoice.status == Invoice.Status.PAID  # nothing was due: paid, not voidable
    with pytest.raises(DomainError):
        invoice_void(invoice, now=NOW, actor=STAFF)
    with pytest.raises(DomainError, match="At most €0.00 can still be credited"):
        credit_note_create(invoice, lines=[CreditLine(amount=100)], now=NOW, actor=STAFF)
    assert _balance(customer) == -3000


def _active_daily(amount=3000, quantity=1, **fields):
    price = make_price(amount, interval="day", count=30, name="Team")
    subscription = make_subscription(price, quantity=quantity, **fields)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    return subscription, price


def test_a_downgrade_invoiced_now_credits_the_balance_through_the_invoice():
    subscription, price = _active_daily(3000, quantity=3)
    at = NOW + timedelta(days=10)
    subscription_change(subscription, items=[(price, 1)], now=at, actor=STAFF,
                        proration_behavior="always_invoice")
    invoice = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_update")
    assert [line.amount for line in invoice.lines.order_by("position")] == [-6000, 2000]
    assert (invoice.status, invoice.total, invoice.amount_due) == ("paid", -4000, 0)
    assert _balance(subscription.customer) == -4000
    assert not PaymentAttempt.objects.filter(invoice=invoice).exists()


def test_pending_credit_lowers_the_next_renewal():
    subscription, price = _active_daily(3000, quantity=3)
    subscription_change(subscription, items=[(price, 1)], now=NOW + timedelta(days=15),
                        actor=STAFF)
    assert sorted(PendingItem.objects.values_list("amount", flat=True)) == [-4500, 1500]
    renewals.subscriptions_sweep(now=subscription.current_period_end)
    invoice = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_cycle")
    assert [(line.amount, line.proration) for line in invoice.lines.order_by("position")] == [
        (3000, False), (-4500, True), (1500, True)]
    assert (invoice.total, invoice.amount_due) == (0, 0)


def test_admin_preview_shows_the_credit_and_the_charge_on_the_upcoming_invoice(admin_client):
    from customers.clock import system_now

    price = make_price(3000, interval="day", count=30, name="Team")
    subscription = make_subscription(price, now=system_now())
    subscription_transition(subscription, S.ACTIVE, now=system_now(), actor=STAFF)
    item = subscription.items.get()
    page = admin_client.post(
        reverse("admin:subscriptions_subscription_change_plan", args=[subscription.pk]),
        {"item": item.pk, "price": price.pk, "quantity": 2,
         "proration_behavior": "create_prorations"},
    ).content.decode()
    upcoming = page[page.index('id="upcoming-invoice"'):]
    assert upcoming.index("Unused time on 1 × Team") < upcoming.index("Remaining time on 2 × Team")
    assert "€60.00" in upcoming  # after the credit and the charge, the next period


# --- 2. the subscription's default payment method --------------------------------------------


def test_a_subscription_is_charged_with_its_own_default_method():
    customer = make_customer()
    add_card(customer, "sim_4242")
    company_card = add_card(customer, "sim_4444", make_default=False)
    subscription = make_subscription(make_price(1500), customer=customer,
                                     default_payment_method=company_card)
    invoice = subscription.latest_invoice
    assert invoice.default_payment_method_id == company_card.pk
    collection.collect_due(now=NOW)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.payment_method_id == company_card.pk
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE
    # the renewal carries it too (the bulk path)
    renewals.subscriptions_sweep(now=subscription.current_period_end)
    renewal = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_cycle")
    assert renewal.default_payment_method_id == company_card.pk


def test_a_hard_declined_subscription_method_is_not_charged_again_nor_replaced_silently():
    customer = make_customer()
    good = add_card(customer, "sim_4242")
    stolen = add_card(customer, "sim_9979", make_default=False)
    make_subscription(make_price(1500), customer=customer, default_payment_method=stolen)
    collection.collect_due(now=NOW)
    stolen.refresh_from_db()
    assert stolen.unusable_code == "stolen_card"

    second = make_subscription(make_price(900), customer=customer,
                               default_payment_method=stolen, now=NOW + timedelta(hours=1))
    counts = collection.collect_due(now=NOW + timedelta(hours=1))
    invoice = second.latest_invoice
    invoice.refresh_from_db()
    assert counts.attempted == 0 and counts.held == 1
    assert invoice.payment_hold == "hard_decline" and "stolen_card" in invoice.last_payment_error
    assert not PaymentAttempt.objects.filter(payment_method=good).exists()
    with pytest.raises(DomainError, match="stolen_card"):
        collection.invoice_charge(invoice, now=NOW + timedelta(hours=1), actor=STAFF,
                                  source="staff")

    # A new card from the customer: the held invoices are collected with it.
    later = NOW + timedelta(hours=2)
    new = add_card(customer, "sim_4444", now=later)
    collection.collect_due(now=later)
    invoice.refresh_from_db()
    assert invoice.status == Invoice.Status.PAID
    assert PaymentAttempt.objects.get(invoice=invoice).payment_method_id == new.pk
    assert PaymentAttempt.objects.filter(payment_method=stolen).count() == 1


def test_a_detached_subscription_method_gives_way_to_the_customer_default():
    customer = make_customer()
    good = add_card(customer, "sim_4242")
    other = add_card(customer, "sim_4444", make_default=False)
    subscription = make_subscription(make_price(1500), customer=customer,
                                     default_payment_method=other)
    collection.payment_method_detach(other, now=NOW, actor=STAFF)
    collection.collect_due(now=NOW)
    attempt = PaymentAttempt.objects.get(invoice=subscription.latest_invoice)
    assert attempt.payment_method_id == good.pk


# --- 3. another interval ---------------------------------------------------------------------


def _monthly_and_yearly(currency="EUR"):
    monthly = make_price(3000, currency=currency, interval="month", name="Pro")
    yearly = make_price(30000, currency=currency, interval="year", product=monthly.product)
    return monthly, yearly


def test_monthly_to_yearly_restarts_the_cycle_and_invoices_now():
    monthly, yearly = _monthly_and_yearly()
    subscription = make_subscription(monthly)
    collection.collect_due(now=NOW)
    subscription.refresh_from_db()
    assert subscription.status == S.ACTIVE
    at = NOW + timedelta(days=10)
    period = subscription.current_period_end - subscription.current_period_start

    preview = subscription_preview_change(subscription, items=[(yearly, 1)], now=at)
    assert preview.resets_cycle
    assert [line.amount for line in preview.invoice_now_lines][1:] == [30000]

    subscription_change(subscription, items=[(yearly, 1)], now=at, actor=STAFF)

    subscription.refresh_from_db()
    assert subscription.billing_cycle_anchor == at
    assert (subscription.current_period_start, subscription.current_period_end) == (
        at, add_months(at, 12))
    assert subscription.period_index == 1
    invoice = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_update")
    lines = list(invoice.lines.order_by("position"))
    left = (NOW + period - at) / period
    assert lines[0].proration and lines[0].amount == -round(3000 * left)
    assert (lines[1].amount, lines[1].period_start, lines[1].period_end) == (
        30000, at.date(), add_months(at, 12).date())
    assert invoice.status == Invoice.Status.OPEN
    assert invoice.amount_due == 30000 - round(3000 * left)
    event = Event.objects.filter(subscription_id=subscription.pk,
                                 type="customer.subscription.updated").order_by("id").last()
    assert event.data["previous_attributes"]["billing_cycle_anchor"] == NOW.isoformat()
    assert event.data["previous_attributes"]["items"] == [{"price": monthly.pk, "quantity": 1}]

    # the next renewal is a year later, on the new anchor
    renewals.subscriptions_sweep(now=add_months(at, 12))
    renewal = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_cycle")
    assert renewal.lines.get().period_end == add_months(at, 24).date()


def test_another_interval_without_proration_has_no_credit_line():
    monthly, yearly = _monthly_and_yearly()
    subscription = make_subscription(monthly)
    subscription_change(subscription, items=[(yearly, 1)], now=NOW + timedelta(days=3),
                        actor=STAFF, proration_behavior="none")
    invoice = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_update")
    assert [line.amount for line in invoice.lines.all()] == [30000]


def test_another_interval_while_paused_is_refused_and_changes_nothing():
    monthly, yearly = _monthly_and_yearly()
    subscription = make_subscription(monthly)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    subscription_pause_collection(subscription, behavior="keep_as_draft", now=NOW, actor=STAFF)
    before = (Invoice.objects.count(), Event.objects.count())
    with pytest.raises(DomainError, match="resume it"):
        subscription_change(subscription, items=[(yearly, 1)], now=NOW + timedelta(days=1),
                            actor=STAFF)
    assert subscription.items.get().price == monthly
    assert (Invoice.objects.count(), Event.objects.count()) == before


def test_another_interval_while_trialing_keeps_the_trial():
    monthly, yearly = _monthly_and_yearly()
    subscription = make_subscription(monthly, trial_period_days=14)
    subscription_change(subscription, items=[(yearly, 1)], now=NOW + timedelta(days=2),
                        actor=STAFF)
    subscription.refresh_from_db()
    assert subscription.status == S.TRIALING
    assert subscription.current_period_end == NOW + timedelta(days=14)
    assert not Invoice.objects.filter(subscription_id=subscription.pk).exists()
    renewals.subscriptions_sweep(now=NOW + timedelta(days=14))
    invoice = Invoice.objects.get(subscription_id=subscription.pk)
    assert invoice.lines.get().period_end == add_months(NOW + timedelta(days=14), 12).date()


# --- 4. currency options -----------------------------------------------------------------------


def test_a_customer_in_another_currency_pays_that_currency_amount():
    price = make_price(3000, currency="EUR", currency_options={"usd": 3300, "JPY": 450})
    assert price.amount_in("USD") == 3300 and price.amount_in("JPY") == 450
    customer = make_customer(currency="USD")
    add_card(customer)
    subscription = make_subscription(price, customer=customer, quantity=2)
    assert subscription.currency == "USD"
    first = subscription.latest_invoice
    assert (first.currency, first.lines.get().unit_amount, first.total) == ("USD", 3300, 6600)
    subscription_transition(subscription, S.ACTIVE, now=NOW, actor=STAFF)
    preview = subscription_preview_change(
        subscription, items=[(price, 3)], now=NOW + timedelta(days=1))
    assert preview.next_invoice_lines[-1].amount == 9900
    renewals.subscriptions_sweep(now=subscription.current_period_end)
    renewal = Invoice.objects.get(subscription_id=subscription.pk,
                                  billing_reason="subscription_cycle")
    assert renewal.lines.get().unit_amount == 3300


def test_a_currency_the_price_lacks_is_refused():
    price = make_price(3000, currency="EUR", currency_options={"USD": 3300})
    customer = make_customer(currency="GBP")
    with pytest.raises(DomainError, match="EUR, USD"):
        make_subscription(price, customer=customer)
    assert not Subscription.objects.exists()


@pytest.mark.parametrize("options,message", [
    ({"EUR": 100}, "own currency"),
    ({"USD": -1}, "non-negative"),
    ({"USD": 1.5}, "whole"),
    ({"XXQ": 100}, "ISO 4217"),
    ({"": 100}, "needs a currency"),
    ({"usd": 100, "USD": 200}, "twice"),
])
def test_bad_currency_options_are_refused_and_nothing_is_created(options, message):
    from subscriptions.models import Price

    with pytest.raises(DomainError, match=message):
        make_price(3000, currency="EUR", currency_options=options)
    assert not Price.objects.exists() and not PriceCurrencyOption.objects.exists()


def test_a_currency_in_use_keeps_its_amount():
    price = make_price(3000, currency="EUR", currency_options={"USD": 3300})
    customer = make_customer(currency="USD")
    make_subscription(price, customer=customer)
    with pytest.raises(DomainError, match="USD"):
        price_currency_options_set(price, {"GBP": 2500}, now=NOW, actor=STAFF)
    assert list(price.currency_options.values_list("currency", "unit_amount")) == [
        ("USD", 3300)]
    price_currency_options_set(price, {"USD": 3400, "GBP": 2500}, now=NOW, actor=STAFF)
    assert sorted(price.currency_options.values_list("currency", "unit_amount")) == [
        ("GBP", 2500), ("USD", 3400)]


def _price_form(price, rows, delete=()):
    data = {
        "product": price.product_id, "nickname": price.nickname, "currency": price.currency,
        "unit_amount": price.unit_amount, "type": price.type,
        "recurring_interval": price.recurring_interval,
        "recurring_interval_count": price.recurring_interval_count,
        "tax_behavior": price.tax_behavior, "active": "on",
        "currency_options-TOTAL_FORMS": len(rows), "currency_options-INITIAL_FORMS": sum(
            1 for row in rows if row[0]),
        "currency_options-MIN_NUM_FORMS": 0, "currency_options-MAX_NUM_FORMS": 1000,
    }
    for i, (pk, currency, amount) in enumerate(rows):
        data |= {f"currency_options-{i}-id": pk or "", f"currency_options-{i}-price": price.pk,
                 f"currency_options-{i}-currency": currency,
                 f"currency_options-{i}-unit_amount": amount}
        if pk in delete:
            data[f"currency_options-{i}-DELETE"] = "on"
    return data


def test_admin_takes_currency_options_as_rows(admin_client):
    price = make_price(3000, currency="EUR")
    change = reverse("admin:subscriptions_price_change", args=[price.pk])
    page = admin_client.get(change).content.decode()
    assert 'name="currency_options-0-currency"' in page

    response = admin_client.post(change, _price_form(price, [(None, "USD", 3300)]))
    assert response.status_code == 302
    assert price.amount_in("USD") == 3300

    bad = admin_client.post(change, _price_form(
        price, [(price.currency_options.get().pk, "USD", 3300), (None, "EUR", 10)]))
    assert bad.status_code == 200 and "own currency" in bad.content.decode()
    assert price.currency_options.count() == 1

    make_subscription(price, customer=make_customer(currency="USD"))
    option = price.currency_options.get()
    refused = admin_client.post(change, _price_form(price, [(option.pk, "USD", 3300)],
                                                    delete=(option.pk,)))
    assert refused.status_code == 200
    assert "Subscriptions bill this price in USD" in refused.content.decode()
    assert price.currency_options.count() == 1
