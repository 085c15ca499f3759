"""The event log's writer: small batches through bulk_create, large ones (PostgreSQL)
through COPY. Both must write the same rows and hand subscribers saved events."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model

from customers.actors import Actor
from invoices import events as event_log
from invoices.bulkwrite import COPY_FROM
from invoices.models import Event

from .factories import NOW, make_customer, make_open

pytestmark = pytest.mark.django_db


@pytest.fixture
def received():
    batches = []

    def subscriber(events):
        batches.append([(event.pk, event.type) for event in events])

    event_log.subscribe(subscriber)
    yield batches
    event_log.unsubscribe(subscriber)


@pytest.mark.parametrize("count", [3, COPY_FROM, 240])
def test_saved_events_read_back_as_built_in_order(count, received):
    user = get_user_model().objects.create_user("bea", password="x")
    customer = make_customer()
    invoice = make_open(customer)
    staff = Actor.staff(user)
    built = [
        event_log.event_build(
            f"test.kind_{n % 4}",
            now=NOW + timedelta(seconds=n // 10),  # ties on created_at within each ten
            actor=staff if n % 2 else Actor.system("sweep"),
            invoice=invoice if n % 3 else None,
            customer=customer,
            data={"n": n, "text": "reçu n°1 — 😀", "nested": {"amounts": [1, None, True]}},
        )
        for n in range(count)
    ]

    saved = event_log.events_save(built)

    ids = [event.pk for event in saved]
    assert None not in ids and ids == sorted(ids) and len(set(ids)) == count
    assert received[-1] == [(event.pk, event.type) for event in saved]
    rows = {row.pk: row for row in Event.objects.filter(pk__in=ids)}
    for n, event in enumerate(saved):
        row = rows[event.pk]
        assert row.type == f"test.kind_{n % 4}"
        assert row.created_at == NOW + timedelta(seconds=n // 10)
        assert (row.actor_kind, row.actor_user_id, row.actor_label) == (
            ("staff", user.pk, staff.label) if n % 2 else ("system", None, "sweep")
        )
        assert row.invoice_id == (invoice.pk if n % 3 else None)
        assert row.customer_id == customer.pk and row.credit_note_id is None
        assert row.data == {"n": n, "text": "reçu n°1 — 😀", "nested": {"amounts": [1, None, True]}}
    # The timeline's order (newest first, ties by id) is the order they were built in.
    timeline = list(Event.objects.filter(pk__in=ids).values_list("data__n", flat=True))
    assert timeline == sorted(range(count), key=lambda n: (-(n // 10), -n))


def test_an_event_written_after_a_batch_gets_a_later_id():
    customer = make_customer()
    batch = event_log.events_save(
        event_log.event_build("test.batch", now=NOW, actor=Actor.system(), customer=customer)
        for _ in range(COPY_FROM)
    )
    one = event_log.event_record("test.one", now=NOW, actor=Actor.system(), customer=customer)
    assert one.pk > max(event.pk for event in batch)
