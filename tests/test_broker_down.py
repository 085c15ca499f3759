"""With the broker down (Redis stopped: here a closed port), a staff action that queues
an email answers in bounded time: the wake-up task is published once, without Celery's
publish retries, and the outbox sweep delivers the email anyway."""

import time

import pytest
from django.urls import reverse

from automations.notifications.models import OutboxMessage
from billing_site.celery import app

from .factories import make_open
from .processes import free_port


def fresh_connections():
    app._pool = None
    app.amqp._producer_pool = None


@pytest.fixture
def broker_on_a_closed_port():
    saved = app.conf.broker_url
    app.conf.broker_url = f"redis://127.0.0.1:{free_port()}/0"
    fresh_connections()
    yield
    app.conf.broker_url = saved
    fresh_connections()


def test_a_staff_action_queuing_an_email_is_quick_with_the_broker_down(
    client, admin_user, broker_on_a_closed_port, django_capture_on_commit_callbacks
):
    client.force_login(admin_user)
    invoice = make_open(lines=((1, 10000),))
    url = reverse("admin:invoices_invoice_record_payment", args=[invoice.pk])
    form = {"amount": "100.00", "method": "bank_transfer", "received_at": "2026-03-01T10:00",
            "reference": "WIRE-1"}

    started = time.monotonic()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, form)
    elapsed = time.monotonic() - started

    assert response.status_code == 302
    assert OutboxMessage.objects.filter(kind="receipt", invoice=invoice).exists()
    # Celery's publish retries took about 8 s here; one refused connection takes far
    # less. A bound, not a benchmark: generous for a loaded machine.
    assert elapsed < 4, f"the staff action took {elapsed:.1f} s with the broker down"
