"""simulate --subscriptions: subscribers renew on the clock and their dunning plays out."""

from datetime import UTC, datetime

from automations.simulation import simulate_modes
from invoices.models import Invoice
from subscriptions.models import Subscription

from .test_simulate import run


def test_subscribers_renew_instead_of_receiving_one_off_invoices():
    [report] = simulate_modes(customers=20, days=32, seed=2, modes=["smart"],
                              start=datetime(2026, 1, 5, tzinfo=UTC), keep=True,
                              subscriptions=1.0, yearly=0.2)
    subscriptions = Subscription.objects.all()
    assert subscriptions.count() == 20
    assert sum(report.subscriptions_by_status.values()) == 20
    intervals = set(subscriptions.values_list("items__price__recurring_interval", flat=True))
    assert intervals == {"month", "year"}
    # A first payment still failing after 23 hours expires the subscription (no renewal);
    # every other monthly subscriber renews once in 32 days.
    monthly = subscriptions.filter(items__price__recurring_interval="month")
    renewing = monthly.exclude(status__in=["incomplete", "incomplete_expired"])
    renewals = Invoice.objects.filter(billing_reason="subscription_cycle")
    assert set(renewals.values_list("subscription_id", flat=True)) == set(
        renewing.values_list("pk", flat=True))
    assert renewals.count() == renewing.count() > 0
    assert not Invoice.objects.filter(billing_reason="manual").exists()  # no one-off invoices


def test_the_command_prints_subscriptions_and_refuses_a_bad_share():
    import pytest
    from django.core.management import CommandError

    output = run("simulate", "--customers", "5", "--days", "3", "--no-compare",
                 "--subscriptions", "1", "--yearly", "0")
    assert "subscriptions: " in output
    with pytest.raises(CommandError, match="shares between 0 and 1"):
        run("simulate", "--subscriptions", "2")
