"""Every gateway answer is checked against the request it answers: a mismatch (another
amount or currency, another charge's id or metadata) is never booked; the attempt is
held for staff, who are told, and the invoice is charged by nothing until they decide.

The Stripe adapter answers from its recorded PaymentIntent (tests/fixtures/stripe),
echoing the request as Stripe does, then altered as a faulty or hostile answer would be.
"""

import json
import urllib.parse
from datetime import timedelta
from pathlib import Path

import pytest
from django.urls import reverse

from automations.notifications.models import NotificationSettings, OutboxMessage
from customers.errors import DomainError
from customers.models import Customer
from invoices import collection
from invoices.gateways.stripe import StripeGateway
from invoices.models import Event, PaymentAttempt
from invoices.review import held_payment_book, held_payment_release

from .factories import NOW, STAFF, make_charged

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
A = PaymentAttempt.Status


class EchoStripe:
    """A transport answering every charge with the recorded succeeded PaymentIntent for
    what was asked (amount, currency, metadata), then `tamper`ed."""

    def __init__(self, **tamper):
        self.tamper = tamper
        self.calls = 0

    def __call__(self, method, url, headers, body, timeout):
        self.calls += 1
        form = dict(urllib.parse.parse_qsl(body.decode()))
        intent = json.loads((FIXTURES / "payment_intent_succeeded.json").read_bytes())
        metadata = {key[len("metadata["):-1]: value for key, value in form.items()
                    if key.startswith("metadata[")}
        intent.update(amount=int(form["amount"]), amount_received=int(form["amount"]),
                      currency=form["currency"], metadata=metadata)
        for name, value in self.tamper.items():
            if name.startswith("metadata_"):
                intent["metadata"][name[len("metadata_"):]] = value
            else:
                intent[name] = value
        return 200, json.dumps(intent).encode()


def stripe(**tamper) -> StripeGateway:
    return StripeGateway(api_key="sk_test_123", transport=EchoStripe(**tamper))


@pytest.fixture(autouse=True)
def _staff_alerts():
    settings = NotificationSettings.load()
    settings.alert_recipients = "collections@example.com"
    settings.save()


def collect(gateway, now=NOW):
    return collection.collect_due(now=now, gateway=gateway)


def test_an_answer_that_matches_its_request_is_booked():
    invoice = make_charged()

    collect(stripe())

    invoice.refresh_from_db()
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total


@pytest.mark.parametrize("tamper, reason", [
    ({"amount": 100000, "amount_received": 100000}, "charge of 100000 minor units"),
    ({"amount_received": 100000}, "100000 minor units received"),
    ({"currency": "jpy"}, "charge in JPY"),
    ({"metadata_attempt": "999999"}, "attempt=999999"),
    ({"metadata_idempotency_key": "auto-1-someone-else"}, "idempotency_key=auto-1-someone-else"),
    ({"metadata_invoice": "424242"}, "invoice=424242"),
])
def test_a_mismatched_answer_is_held_for_review_and_never_booked(tamper, reason):
    invoice = make_charged()

    collect(stripe(**tamper))

    invoice.refresh_from_db()
    attempt = invoice.payment_attempts.get()
    assert attempt.status == A.HELD and reason in attempt.failure_message
    assert attempt.payment_id is None and not invoice.payments.exists()
    assert invoice.status == "open" and invoice.amount_paid == 0
    assert Customer.objects.get(pk=invoice.customer_id).balance == 0  # no 10x credit
    assert invoice.payment_hold == "gateway_review" and invoice.next_payment_attempt is None
    held = Event.objects.get(invoice=invoice, type="invoice.payment_held_for_review")
    assert reason in held.data["reason"]
    alert = OutboxMessage.objects.get(kind="payment_held", invoice=invoice)
    assert alert.to == ["collections@example.com"]


def test_a_held_invoice_is_charged_by_nothing_until_staff_decide():
    invoice = make_charged()
    collect(stripe(currency="jpy"))
    gateway = stripe()

    collect(gateway, now=NOW + timedelta(days=3))
    with pytest.raises(DomainError, match="being checked"):
        collection.invoice_charge(invoice, now=NOW, actor=STAFF, source="customer",
                                  gateway_token="pm_x", gateway=gateway)
    # Even a forced due date: the sweep passes it over (and the database would refuse).
    type(invoice).objects.filter(pk=invoice.pk).update(next_payment_attempt=NOW)
    collect(gateway, now=NOW + timedelta(days=4))

    assert gateway.transport.calls == 0
    assert invoice.payment_attempts.count() == 1


def test_staff_book_a_held_payment():
    invoice = make_charged()
    collect(stripe(amount_received=100000))

    held_payment_book(invoice, now=NOW, actor=STAFF)

    invoice.refresh_from_db()
    attempt = invoice.payment_attempts.get()
    assert attempt.status == A.SUCCEEDED and attempt.payment.amount == invoice.total
    assert invoice.status == "paid" and invoice.payment_hold == ""
    decided = Event.objects.get(invoice=invoice, type="invoice.payment_review_resolved")
    assert decided.data["decision"] == "booked" and decided.actor_label == "alice"
    with pytest.raises(DomainError, match="no payment held"):
        held_payment_book(invoice, now=NOW, actor=STAFF)


def test_staff_release_a_held_invoice_to_collection():
    invoice = make_charged()
    collect(stripe(metadata_attempt="999999"))

    held_payment_release(invoice, now=NOW + timedelta(hours=1), actor=STAFF)
    collect(stripe(), now=NOW + timedelta(hours=1))

    invoice.refresh_from_db()
    first, second = invoice.payment_attempts.order_by("pk")
    assert first.status == A.FAILED and second.status == A.SUCCEEDED
    assert invoice.status == "paid" and invoice.amount_paid == invoice.total


def test_the_admin_shows_and_resolves_a_held_payment(client, admin_user):
    client.force_login(admin_user)
    invoice = make_charged()
    collect(stripe(currency="jpy"))
    change = reverse("admin:invoices_invoice_change", args=[invoice.pk])

    page = client.get(change).content.decode()
    assert "Held payment: book it" in page and "Held payment: release to collection" in page

    url = reverse("admin:invoices_invoice_release_held_payment", args=[invoice.pk])
    assert client.post(url).status_code == 302
    invoice.refresh_from_db()
    assert invoice.payment_hold == "" and invoice.next_payment_attempt is not None
    assert "Held payment" not in client.get(change).content.decode()
