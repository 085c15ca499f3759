"""The event log: every state change and outbound action, with its actor."""

from datetime import datetime

from customers.actors import Actor

from .models import Event


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


def event_record(type: str, **kwargs) -> Event:
    event = event_build(type, **kwargs)
    event.save()
    return event
