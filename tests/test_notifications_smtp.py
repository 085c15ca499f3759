"""Delivery through a real SMTP server (aiosmtpd, started by the tests): messages arrive
with their attachments over one connection per batch; with the server down nothing is
lost and nothing is sent twice; two workers draining at once send each email once."""

import threading
from datetime import date, timedelta

import pytest
from django.db import connection

from automations.models import OutboxMessage
from automations.notifications.delivery import LEASE, outbox_claim, outbox_drain

from .factories import NOW, make_customer, make_open

pytestmark = pytest.mark.usefixtures("pdfs")
DUE = date(2026, 3, 31)


def invoices(count):
    return [make_open(make_customer(), due_date=DUE) for _ in range(count)]


def message_ids(server):
    return [message["Message-ID"] for message in server.inbox.messages]


def test_messages_arrive_with_their_pdf_over_one_connection(smtp_server):
    sent = invoices(3)

    counts = outbox_drain(now=NOW)

    assert counts["sent"] == 3
    assert smtp_server.inbox.connections == 1
    first = smtp_server.inbox.messages[0]
    assert first["To"] == sent[0].customer.email
    assert first["Subject"] == f"Invoice {sent[0].number} from Billing"
    assert first["Message-ID"] == OutboxMessage.objects.get(invoice=sent[0]).message_id
    parts = {part.get_content_type(): part for part in first.walk()}
    assert "text/plain" in parts and "text/html" in parts
    pdf = parts["application/pdf"]
    assert pdf.get_filename() == f"invoice-{sent[0].pk}.pdf"
    assert pdf.get_content().startswith(b"%PDF")


def test_server_down_then_back_nothing_lost_nothing_twice(smtp_server):
    invoices(4)
    smtp_server.stop()

    down = outbox_drain(now=NOW)

    assert down == {"sent": 0, "retrying": 4, "failed": 0, "cancelled": 0}
    row = OutboxMessage.objects.first()
    assert row.last_error.startswith("The mail server cannot be reached")
    assert row.next_attempt_at == NOW + timedelta(minutes=1)

    smtp_server.start()
    assert outbox_drain(now=NOW + timedelta(seconds=30))["sent"] == 0  # not due yet
    assert outbox_drain(now=NOW + timedelta(minutes=1))["sent"] == 4
    assert outbox_drain(now=NOW + timedelta(days=1))["sent"] == 0

    ids = message_ids(smtp_server)
    assert len(ids) == 4 and len(set(ids)) == 4
    assert set(OutboxMessage.objects.values_list("status", flat=True)) == {"sent"}


def test_a_worker_that_died_after_claiming_is_taken_over_when_its_lease_expires(smtp_server):
    invoices(2)
    outbox_claim(now=NOW, size=10)  # a worker claims, then dies before sending

    assert outbox_drain(now=NOW + timedelta(minutes=5))["sent"] == 0  # still leased
    assert outbox_drain(now=NOW + LEASE)["sent"] == 2

    assert len(message_ids(smtp_server)) == 2


@pytest.mark.postgres
@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="needs PostgreSQL (row locks, two real connections)")
@pytest.mark.django_db(transaction=True)
def test_two_workers_draining_the_same_outbox_send_each_email_once(smtp_server):
    invoices(40)
    barrier = threading.Barrier(2)
    results, errors = [], []

    def worker():
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            results.append(outbox_drain(now=NOW, batch_size=5))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert errors == []
    assert sum(result["sent"] for result in results) == 40
    assert all(result["sent"] > 0 for result in results)  # both took part
    ids = message_ids(smtp_server)
    assert len(ids) == 40 and len(set(ids)) == 40
