"""The admin index is the morning dashboard: per currency what is due today, overdue and
recovered, the next retries, failed emails, automations waiting once the engine exists;
each figure links to the list behind it."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse

from automations import dashboard
from automations.notifications.models import OutboxMessage
from invoices.models import Invoice, PaymentAttempt

from .factories import NOW, add_card, make_customer, make_open

INDEX = reverse("admin:index")


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def frozen():
    with time_machine.travel(NOW + timedelta(hours=1), tick=False):
        yield


def card_html(page: str, card_id: str) -> str:
    start = page.index(f'id="{card_id}"')
    return page[start:page.index("</section>", start)]


def test_the_index_shows_each_figure_with_a_link_to_its_list(staff, frozen):
    eur, jpy = make_customer(currency="EUR"), make_customer(currency="JPY")
    due_today = make_open(eur, lines=((1, 25000),))
    overdue = make_open(jpy, lines=((1, 4500),))
    retried = make_open(eur, lines=((1, 9900),))
    today = NOW.date()
    Invoice.objects.filter(pk=due_today.pk).update(
        due_date=today, past_due_at=NOW + timedelta(days=1)
    )
    Invoice.objects.filter(pk=overdue.pk).update(past_due_at=NOW - timedelta(days=3))
    Invoice.objects.filter(pk=retried.pk).update(next_payment_attempt=NOW + timedelta(hours=5))
    card = add_card(eur)
    PaymentAttempt.objects.create(
        invoice=retried, customer=eur, payment_method=card, gateway_token="sim_4242",
        source="automatic", amount=1250, currency="EUR", idempotency_key="k1",
        status="succeeded", retry_of_decline_code="insufficient_funds",
        created_at=NOW - timedelta(days=2),
    )
    OutboxMessage.objects.create(key="x:1", kind="receipt", status="failed", customer=eur,
                                 next_attempt_at=NOW, created_at=NOW)

    page = staff.get(INDEX).content.decode()

    due = card_html(page, "due-today")
    assert "€250.00" in due and "1 invoice" in due
    assert "currency=EUR" in due and f"due_date__gte={today.isoformat()}" in due
    late = card_html(page, "overdue")
    assert "¥4,500" in late and "past_due=yes" in late and "currency=JPY" in late
    recovered = card_html(page, "recovered")
    assert "€12.50" in recovered and "recovered=yes" in recovered
    retries = card_html(page, "next-retries")
    assert retried.number in retries and reverse(
        "admin:invoices_invoice_change", args=[retried.pk]) in retries
    failed = card_html(page, "failed-emails")
    assert ">1<" in failed and "status__exact=failed" in failed
    waiting = card_html(page, "automations-waiting")
    assert ">0<" in waiting and "status__exact=waiting" in waiting


def test_the_links_open_lists_showing_the_same_invoices(staff, frozen):
    customer = make_customer(currency="EUR")
    overdue = make_open(customer)
    Invoice.objects.filter(pk=overdue.pk).update(past_due_at=NOW - timedelta(days=1))
    url = dashboard.admin_url("invoices_invoice_changelist", past_due="yes", currency="EUR")

    page = staff.get(url).content.decode()

    assert overdue.number in page


def test_the_index_reads_a_few_queries_whatever_the_data(
    staff, frozen, django_assert_max_num_queries
):
    for currency in ("EUR", "USD", "GBP"):
        for _ in range(3):
            make_open(make_customer(currency=currency))

    with django_assert_max_num_queries(12):
        assert staff.get(INDEX).status_code == 200
