"""Collection in the admin: billing settings, retry policies, payment methods, attempts,
the "Charge now" button, and what the invoice page says about retries."""

import pytest
import time_machine
from django.urls import reverse

from automations.models import BillingSettings, RetryPolicy
from customers.models import PaymentMethod
from invoices import collection
from invoices.models import PaymentAttempt

from .admin_forms import rows
from .factories import NOW, add_card, make_charged, make_customer


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def test_billing_settings_is_one_screen_that_explains_scheduled_retries(staff_client):
    response = staff_client.get(reverse("admin:automations_billingsettings_changelist"),
                                follow=True)
    body = response.content.decode()
    assert response.status_code == 200
    assert "never moves retries already planned" in body
    assert BillingSettings.objects.count() == 1


def test_settings_out_of_range_are_refused_and_change_nothing(staff_client):
    settings = BillingSettings.load()
    url = reverse("admin:automations_billingsettings_change", args=[settings.pk])
    response = staff_client.post(url, {
        "automatic_collection": "on",
        "default_retry_policy": settings.default_retry_policy_id,
        "uncollectible_after_days": "45",
        **rows("partial_payment_tolerance", {"EUR": "0.005"}),
    })
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "45" in str(errors["uncollectible_after_days"])
    assert errors["partial_payment_tolerance"] == [
        "EUR: EUR amounts have at most 2 decimal places."]
    settings.refresh_from_db()
    assert settings.uncollectible_after_days is None and settings.partial_payment_tolerance == {}


def test_nine_retries_are_refused(staff_client):
    response = staff_client.post(reverse("admin:automations_retrypolicy_add"), {
        "name": "Aggressive", "mode": "smart", "max_retries": "9", "window_days": "14",
        "custom_schedule": "[]", "after_last_retry": "leave_past_due",
        "customer_segments": "[]",
    })
    assert response.status_code == 200
    assert "less than or equal to 8" in str(response.context["adminform"].form.errors)
    assert not RetryPolicy.objects.filter(name="Aggressive").exists()


def test_adding_a_card_in_the_admin_resumes_a_held_invoice(staff_client):
    invoice = make_charged("sim_9979")
    collection.collect_due(now=NOW)
    invoice.refresh_from_db()
    assert invoice.payment_hold == "hard_decline"
    response = staff_client.post(reverse("admin:customers_paymentmethod_add"), {
        "customer": invoice.customer_id, "type": "card", "gateway_reference": "sim_4242",
        "brand": "visa", "last4": "4242", "exp_month": "12", "exp_year": "2030",
        "make_default": "on",
    }, follow=True)
    assert response.status_code == 200
    invoice.refresh_from_db()
    assert invoice.payment_hold == "" and invoice.next_payment_attempt == NOW
    assert invoice.customer.payment_methods.count() == 2


def test_an_expired_card_is_refused_in_the_admin(staff_client):
    customer = make_customer()
    response = staff_client.post(reverse("admin:customers_paymentmethod_add"), {
        "customer": customer.pk, "type": "card", "gateway_reference": "sim_4242",
        "last4": "4242", "exp_month": "1", "exp_year": "2020", "make_default": "on",
    }, follow=True)
    assert "This card has expired." in messages_of(response)
    assert not PaymentMethod.objects.filter(customer=customer).exists()


def test_charge_now_button_reports_a_decline_and_keeps_the_attempt(staff_client):
    invoice = make_charged("sim_9995")
    url = reverse("admin:invoices_invoice_retry_payment", args=[invoice.pk])
    response = staff_client.post(url, follow=True)
    assert any("insufficient_funds" in m for m in messages_of(response))
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.source == "staff" and attempt.status == "failed"


def test_invoice_page_shows_the_retry_time_and_why(staff_client):
    invoice = make_charged("sim_9995")
    collection.collect_due(now=NOW)
    invoice.refresh_from_db()
    body = staff_client.get(
        reverse("admin:invoices_invoice_change", args=[invoice.pk])
    ).content.decode()
    assert "Smart Retries: insufficient_funds" in body
    assert "Your card has insufficient funds." in body


def test_customer_page_lists_payment_methods_and_attempt_list_loads(staff_client):
    customer = make_customer()
    add_card(customer, "sim_4242")
    body = staff_client.get(
        reverse("admin:customers_customer_change", args=[customer.pk])
    ).content.decode()
    assert "visa •••• 4242" in body
    assert staff_client.get(reverse("admin:invoices_paymentattempt_changelist")).status_code == 200
    assert staff_client.get(reverse("admin:automations_retrystat_changelist")).status_code == 200
