"""seed_demo's subscriptions: every status staff meet, monthly and yearly, with invoices."""

from io import StringIO

from django.core.management import call_command

from invoices.models import Invoice, InvoiceLine
from subscriptions.models import Price, Subscription


def test_demo_has_a_subscription_in_every_status():
    out = StringIO()
    call_command("seed_demo", stdout=out)

    statuses = set(Subscription.objects.values_list("status", flat=True))
    assert statuses >= {"trialing", "active", "past_due", "unpaid", "paused", "canceled"}
    assert Subscription.objects.filter(cancel_at_period_end=True, status="active").exists()
    assert Subscription.objects.filter(items__price__recurring_interval="year").count() >= 2
    assert set(Price.objects.values_list("currency", flat=True)) >= {"EUR", "USD", "GBP", "JPY"}
    assert Price.objects.filter(active=False).exists()
    past_due = Subscription.objects.get(status="past_due")
    renewal = Invoice.objects.get(subscription_id=past_due.pk, billing_reason="subscription_cycle")
    assert renewal.status == "open" and renewal.attempt_count == 1
    assert "Subscriptions:" in out.getvalue()

    count = Subscription.objects.count()
    call_command("seed_demo", stdout=StringIO())  # twice: nothing more
    assert Subscription.objects.count() == count


def test_demo_bills_a_customer_in_another_currency_through_a_price_currency_option():
    call_command("seed_demo", stdout=StringIO())

    seat = Price.objects.get(nickname="Seat monthly")
    assert seat.currency == "EUR"
    assert {o.currency: o.unit_amount for o in seat.currency_options.all()} == {
        "USD": 10_00, "GBP": 8_00,
    }
    in_pounds = Subscription.objects.get(items__price=seat, currency="GBP")
    assert in_pounds.customer.currency == "GBP"
    lines = InvoiceLine.objects.filter(invoice__subscription_id=in_pounds.pk,
                                       description__contains="Seat monthly")
    # The first invoice and the renewal: 2 seats at the option's £8.00.
    assert sorted((line.invoice.billing_reason, line.invoice.currency, line.quantity,
                   line.unit_amount) for line in lines) == [
        ("subscription_create", "GBP", 2, 8_00), ("subscription_cycle", "GBP", 2, 8_00),
    ]
