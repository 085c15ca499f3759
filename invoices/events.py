"""The event log: every state change and outbound action, with its actor.

Higher apps never get imported from here; they *subscribe*. A subscriber is a function
taking a list of saved events; it runs inside the transaction that wrote them, so what
it writes (an outbox row, a pending document) commits or rolls back with the change
that caused it. Subscribers register in their AppConfig.ready() and must be quick and
set-based: the bulk doors hand them thousands of events at once.
"""

import json
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import connection

from customers.actors import Actor

from .models import Event

Subscriber = Callable[[list[Event]], None]
_subscribers: list[Subscriber] = []


def subscribe(subscriber: Subscriber) -> Subscriber:
    """Call `subscriber(events)` with every batch of events written from now on."""
    if subscriber not in _subscribers:
        _subscribers.append(subscriber)
    return subscriber


def unsubscribe(subscriber: Subscriber) -> None:
    if subscriber in _subscribers:
        _subscribers.remove(subscriber)


def event_build(
    type: str,
    *,
    now: datetime,
    actor: Actor,
    invoice=None,
    customer=None,
    credit_note=None,
    data: dict | None = None,
) -> Event:
    if customer is None and invoice is not None:
        customer_id = invoice.customer_id
    else:
        customer_id = customer.pk if customer is not None else None
    return Event(
        type=type,
        created_at=now,
        actor_kind=actor.kind,
        actor_user_id=actor.user_id,
        actor_label=actor.label,
        customer_id=customer_id,
        invoice=invoice,
        credit_note=credit_note,
        data=data or {},
    )


# From this many events on, PostgreSQL gets them by COPY: the bulk doors write thousands
# at once, and bulk_create's per-value preparation cost more than the database's work.
COPY_FROM = 50
COPIED = ("id", "type", "created_at", "actor_kind", "actor_user_id", "actor_label",
          "customer_id", "invoice_id", "credit_note_id", "data")


def events_save(events: Iterable[Event]) -> list[Event]:
    """Write built events and hand them to the subscribers (saved: with their ids).
    Call it inside the transaction of the change the events describe."""
    events = list(events)
    if connection.vendor == "postgresql" and len(events) >= COPY_FROM:
        _events_copy(events)
    else:
        events = Event.objects.bulk_create(events, batch_size=1000)
    if events:
        for subscriber in list(_subscribers):
            subscriber(events)
    return events


def _events_copy(events: list[Event]) -> None:
    """The same rows bulk_create would write, through COPY: ids are taken from the
    table's sequence first (in order, so ties on created_at keep the events' order)."""
    table = Event._meta.db_table
    encoder = Event._meta.get_field("data").encoder
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, len(events)],
        )
        ids = sorted(row[0] for row in cursor.fetchall())
        sql = f"COPY {connection.ops.quote_name(table)} ({', '.join(COPIED)}) FROM STDIN"
        with cursor.cursor.copy(sql) as copy:
            for pk, event in zip(ids, events, strict=True):
                copy.write_row((
                    pk, event.type, event.created_at, event.actor_kind, event.actor_user_id,
                    event.actor_label, event.customer_id, event.invoice_id,
                    event.credit_note_id, json.dumps(event.data, cls=encoder),
                ))
    for pk, event in zip(ids, events, strict=True):
        event.pk = pk
        event._state.adding, event._state.db = False, connection.alias


def event_record(type: str, **kwargs) -> Event:
    return events_save([event_build(type, **kwargs)])[0]
