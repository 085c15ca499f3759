"""The event log: every state change and outbound action, with its actor.

Higher apps never get imported from here; they *subscribe*. A subscriber is a function
taking a list of saved events; it runs inside the transaction that wrote them, so what
it writes (an outbox row, a pending document) commits or rolls back with the change
that caused it. Subscribers register in their AppConfig.ready() and must be quick and
set-based: the bulk doors hand them thousands of events at once.
"""

from collections.abc import Callable, Iterable
from datetime import datetime

from customers.actors import Actor

from .bulkwrite import rows_insert
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
    subscription_id: int | None = None,
) -> Event:
    """An unsaved event. `subscription_id` defaults to the invoice's subscription."""
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
        subscription_id=(
            subscription_id if subscription_id is not None
            # Read from the instance only: a deferred column is never loaded for it.
            else vars(invoice).get("subscription_id") if invoice is not None else None
        ),
        data=data or {},
    )


def events_save(events: Iterable[Event]) -> list[Event]:
    """Write built events and hand them to the subscribers (saved: with their ids, which
    ascend in the order built). Call it inside the transaction of the change the events
    describe."""
    events = rows_insert(Event, events)
    if events:
        for subscriber in list(_subscribers):
            subscriber(events)
    return events


def event_record(type: str, **kwargs) -> Event:
    return events_save([event_build(type, **kwargs)])[0]
