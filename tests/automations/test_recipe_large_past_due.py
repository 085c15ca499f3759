"""The large past-due invoice recipe, end to end on a test clock: the team gets one
email per invoice over $500 that is 7 days past due, with its memo; smaller invoices and
invoices in another currency get none."""

from datetime import timedelta

from django.core import mail

from automations.clocks import clock_advance
from automations.engine.models import AutomationRun
from automations.engine.recipes import recipe_install
from customers.models import TestClock
from invoices.models import Event

from ..factories import NOW, make_customer, make_open

T0 = NOW


def test_large_past_due_invoices_alert_the_team_once_with_the_memo(settings):
    settings.COMPANY_EMAIL_DOMAIN = "example.com"
    clock = TestClock.objects.create(name="alerts", frozen_time=T0)
    automation = recipe_install("large_past_due", now=T0, enabled=True)

    def invoice(currency, amount):
        customer = make_customer(test_clock=clock, currency=currency, name=f"{currency} {amount}")
        return make_open(customer, lines=((1, amount),), now=T0,
                         collection_method="send_invoice", days_until_due=10)

    large = invoice("USD", 60000)
    small = invoice("USD", 40000)
    euros = invoice("EUR", 90000)
    clock_advance(clock, to=T0 + timedelta(days=30))

    team = [m for m in mail.outbox if m.to == ["collections@example.com"]]
    assert len(team) == 1
    assert team[0].subject.startswith(f"Invoice over $500 past due by 7 days: {large.number}")
    assert "$600.00 remaining" in team[0].body
    run = AutomationRun.objects.get(automation=automation, invoice=large)
    assert run.status == "completed"
    # The moment it ran: 7 UTC days after the due date (T0 + 10 days).
    step = Event.objects.get(invoice=large, type="automation.step")
    assert step.created_at == (T0 + timedelta(days=17)).replace(hour=0)
    assert step.actor_label == "automation: Large invoice past due: alert the team"
    assert set(AutomationRun.objects.filter(invoice__in=[small, euros])
               .values_list("status", flat=True)) == {"exited"}
