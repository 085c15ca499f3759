"""The two subscription recipes end to end on a test clock.

Annual subscribers' dunning: a yearly subscription whose renewal is declined forever
gets Smart Retries (8 at most, within 2 months of the first failure), then 7 days for
manual outreach, then the subscription is canceled and the invoice marked uncollectible,
each by the automation. A monthly subscriber declined the same way is left to the
default schedule.

Cancellation confirmation: canceling a subscription emails the customer the
cancellation date and the survey link."""

from datetime import timedelta

from django.core import mail

from automations.clocks import clock_advance
from automations.engine.models import AutomationRun
from automations.engine.recipes import recipe_install
from automations.models import NotificationSettings
from customers.models import TestClock
from invoices.models import Event, Invoice
from subscriptions.models import Subscription
from subscriptions.services import subscription_cancel

from ..factories import NOW, STAFF, add_card, make_customer
from ..subscription_factories import make_price, make_subscription

T0 = NOW


def subscriber(clock, interval):
    customer = make_customer(test_clock=clock, currency="USD", preferred_locale="en")
    add_card(customer, "sim_4242", now=T0)
    return make_subscription(make_price(120000, "USD", interval, name=f"Pro {interval}"),
                             customer=customer, now=T0)


def test_annual_subscribers_dunning_recipe():
    clock = TestClock.objects.create(name="annual", frozen_time=T0)
    automation = recipe_install("annual_dunning", now=T0, enabled=True)
    yearly, monthly = subscriber(clock, "year"), subscriber(clock, "month")
    clock_advance(clock, to=T0 + timedelta(hours=1))  # the first invoices are paid
    for subscription in (yearly, monthly):
        subscription.refresh_from_db()
        assert subscription.status == Subscription.Status.ACTIVE
        # The renewals will be declined, forever.
        add_card(subscription.customer, "sim_9995", now=clock.frozen_time)

    clock_advance(clock, to=T0 + timedelta(days=365 + 90))

    invoice = Invoice.objects.get(subscription_id=yearly.pk, billing_reason="subscription_cycle")
    attempts = list(invoice.payment_attempts.order_by("created_at"))
    first, last = attempts[0].created_at, attempts[-1].created_at
    assert len(attempts) == 9  # the first attempt and 8 retries
    assert all(a.status == "failed" for a in attempts)
    assert last - first <= timedelta(days=60)
    yearly.refresh_from_db()
    invoice.refresh_from_db()
    assert yearly.status == Subscription.Status.CANCELED
    # The 7-day wait for manual outreach starts when the last retry has failed.
    canceled_after = yearly.canceled_at - last
    assert timedelta(days=7) <= canceled_after <= timedelta(days=7, minutes=2)
    assert invoice.status == Invoice.Status.UNCOLLECTIBLE
    assert invoice.marked_uncollectible_at == yearly.canceled_at
    actors = set(Event.objects.filter(
        type__in=["customer.subscription.deleted", "invoice.marked_uncollectible"],
        subscription_id=yearly.pk).values_list("actor_label", flat=True))
    assert actors == {f"automation: {automation.name}"}
    run = AutomationRun.objects.get(automation=automation)
    assert (run.invoice_id, run.subscription_id, run.status) == (invoice.pk, yearly.pk,
                                                                  "completed")
    monthly.refresh_from_db()
    assert monthly.status != Subscription.Status.CANCELED
    assert not AutomationRun.objects.filter(subscription_id=monthly.pk).exists()


def test_cancellation_confirmation_recipe():
    clock = TestClock.objects.create(name="cancel", frozen_time=T0)
    automation = recipe_install("cancellation_email", now=T0, enabled=True)
    NotificationSettings.objects.filter(pk=NotificationSettings.load().pk).update(
        cancellation_survey_url="https://survey.example.com/why")
    customer = make_customer(test_clock=clock, currency="USD", email="ana@example.org")
    add_card(customer, "sim_4242", now=T0)
    subscription = make_subscription(make_price(2000, "USD", "month", name="Team"),
                                     customer=customer, now=T0)
    clock_advance(clock, to=T0 + timedelta(days=3))
    subscription_cancel(subscription, now=clock.frozen_time, actor=STAFF)
    mail.outbox.clear()
    clock_advance(clock, to=T0 + timedelta(days=4))

    # The recipe's email is the one the subscription notifications queue too: sent once.
    [email] = [m for m in mail.outbox if "canceled" in m.subject]
    assert email.to == ["ana@example.org"]
    assert email.subject == "Your subscription is canceled"
    assert "effective March 5, 2026" in email.body
    assert "https://survey.example.com/why" in email.body
    run = AutomationRun.objects.get(automation=automation)
    assert run.status == "completed"
    step = Event.objects.get(type="automation.step", subscription_id=subscription.pk)
    assert step.data["text"] == "Customer emailed (subscription_canceled) at ana@example.org."


def test_the_demo_installs_and_enables_the_three_recipes():
    from io import StringIO

    from django.core.management import call_command

    from automations.engine.models import Automation

    out = StringIO()
    call_command("seed_demo", stdout=out)
    assert set(Automation.objects.filter(enabled=True).values_list("recipe", flat=True)) == {
        "annual_dunning", "large_past_due", "cancellation_email"}
    assert "Automations installed and enabled" in out.getvalue()
