"""The subscription emails, through the outbox, in the customer's language."""

from datetime import timedelta

from django.core import mail

from automations.models import NotificationSettings, OutboxMessage
from automations.notifications.delivery import outbox_drain
from subscriptions import renewals
from subscriptions.services import (
    subscription_cancel,
    subscription_pause_collection,
    subscription_resume,
)
from subscriptions.transitions import subscription_transition

from .factories import NOW, STAFF, add_card, make_customer
from .subscription_factories import make_price, make_subscription


def kinds():
    return sorted(OutboxMessage.objects.values_list("kind", flat=True))


def test_trial_ending_email_three_days_before(pdfs):
    customer = make_customer(preferred_locale="fr", email="compta@dupont.fr")
    add_card(customer)
    make_subscription(make_price(2900, name="Pro"), customer=customer, trial_period_days=14)
    renewals.subscriptions_sweep(now=NOW + timedelta(days=11))
    assert kinds() == ["subscription_trial_ending"]
    outbox_drain(now=NOW + timedelta(days=11))
    [sent] = mail.outbox
    assert sent.to == ["compta@dupont.fr"]
    assert "16 mars 2026" in sent.subject
    assert "29,00\u00a0€" in sent.body


def test_upcoming_renewal_for_yearly_only_by_default():
    monthly = make_subscription(make_price(2900), trial_period_days=3)
    yearly = make_subscription(make_price(29000, interval="year"), trial_period_days=3)
    renewals.subscriptions_sweep(now=NOW + timedelta(days=3))  # trials end: first periods
    yearly.refresh_from_db()
    monthly.refresh_from_db()
    assert monthly.notice_at is None
    assert yearly.notice_at == yearly.current_period_end - timedelta(days=7)
    renewals.subscriptions_sweep(now=yearly.notice_at)
    assert kinds().count("subscription_renewal_upcoming") == 1
    outbox_drain(now=yearly.notice_at)
    [sent] = [m for m in mail.outbox if "renews" in m.subject]
    assert "March 5, 2027" in sent.subject


def test_upcoming_renewal_setting_covers_every_interval():
    settings = NotificationSettings.load()
    settings.upcoming_renewal_all_intervals, settings.upcoming_renewal_days = True, 3
    settings.save()
    monthly = make_subscription(make_price(2900), trial_period_days=3)
    renewals.subscriptions_sweep(now=NOW + timedelta(days=3))
    monthly.refresh_from_db()
    assert monthly.notice_at == monthly.current_period_end - timedelta(days=3)


def test_canceled_email_with_survey_link():
    settings = NotificationSettings.load()
    settings.cancellation_survey_url = "https://example.com/why"
    settings.save()
    subscription = make_subscription(make_price(2900), trial_period_days=3)
    subscription_cancel(subscription, now=NOW, actor=STAFF, at_period_end=True)
    subscription.refresh_from_db()
    subscription_cancel(subscription, now=NOW + timedelta(days=1), actor=STAFF)
    assert kinds() == ["subscription_canceled", "subscription_canceled"]
    outbox_drain(now=NOW + timedelta(days=1))
    assert len(mail.outbox) == 2
    assert all("https://example.com/why" in m.body for m in mail.outbox)
    assert any("March 5, 2026" in m.body for m in mail.outbox)  # the period end


def test_paused_and_resumed_emails():
    subscription = make_subscription(make_price(2900), trial_period_days=3)
    subscription_pause_collection(subscription, now=NOW, actor=STAFF, behavior="void",
                                  resumes_at=NOW + timedelta(days=30))
    subscription_resume(subscription, now=NOW + timedelta(days=1), actor=STAFF)
    assert kinds() == ["subscription_paused", "subscription_resumed"]
    outbox_drain(now=NOW + timedelta(days=1))
    paused = [m for m in mail.outbox if "paused" in m.subject][0]
    assert "April 1, 2026" in paused.body


def test_card_expiring_before_the_next_renewal():
    customer = make_customer()
    method = add_card(customer)
    method.exp_month, method.exp_year = 3, 2026  # valid through March: not April 5
    method.save()
    subscription = make_subscription(make_price(2900), customer=customer, trial_period_days=3)
    subscription_transition(subscription, "active", now=NOW, actor=STAFF)
    renewals.subscriptions_sweep(now=subscription.current_period_end)
    assert "subscription_card_expiring" in kinds()
    outbox_drain(now=subscription.current_period_end)
    [sent] = [m for m in mail.outbox if "expires" in m.subject]
    assert "03/2026" in sent.body
