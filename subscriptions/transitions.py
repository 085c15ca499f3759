"""The subscription state machine, as data, and the one door through which status changes.

Every change checks the table, writes the row with a compare-and-set UPDATE (conditional
on the status the caller saw) and leaves its `customer.subscription.*` event, whose
`data` holds the changed values and `previous_attributes` (what webhooks carry), in one
transaction.
"""

from datetime import date, datetime
from decimal import Decimal

from django.db import transaction
from django.db.models.base import ModelState
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from invoices.events import event_build, events_save
from invoices.models import Event

from .models import Subscription

S = Subscription.Status

ALLOWED = {
    S.INCOMPLETE: {S.ACTIVE, S.TRIALING, S.INCOMPLETE_EXPIRED, S.CANCELED},
    S.TRIALING: {S.ACTIVE, S.PAST_DUE, S.PAUSED, S.CANCELED},
    S.ACTIVE: {S.PAST_DUE, S.PAUSED, S.CANCELED},
    S.PAST_DUE: {S.ACTIVE, S.UNPAID, S.PAUSED, S.CANCELED},
    S.UNPAID: {S.ACTIVE, S.PAUSED, S.CANCELED},
    S.PAUSED: {S.ACTIVE, S.PAST_DUE, S.CANCELED},
    S.INCOMPLETE_EXPIRED: set(),
    S.CANCELED: set(),
}
FINAL = {S.CANCELED, S.INCOMPLETE_EXPIRED}
# Statuses whose periods still renew (the renewal index's condition).
RENEWING = [S.TRIALING, S.ACTIVE, S.PAST_DUE, S.UNPAID, S.PAUSED]


class InvalidTransition(DomainError):
    pass


def event_type(previous: str, target: str) -> str:
    if target == S.CANCELED or target == S.INCOMPLETE_EXPIRED:
        return "customer.subscription.deleted"
    if target == S.PAUSED and previous != S.PAUSED:
        return "customer.subscription.paused"
    if previous == S.PAUSED and target != S.PAUSED:
        return "customer.subscription.resumed"
    return "customer.subscription.updated"


def check_transition(current: str, target: str) -> None:
    if target != current and target not in ALLOWED.get(current, set()):
        raise InvalidTransition(
            _("A %(status)s subscription cannot become %(target)s.")
            % {"status": S(current).label.lower(), "target": S(target).label.lower()}
        )


def jsonable(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if hasattr(value, "pk"):
        return value.pk
    return value


def change_event(
    subscription: Subscription, type: str, previous: dict, *, now: datetime, actor: Actor,
    extra: dict | None = None, template: Event | None = None,
):
    """An unsaved customer.subscription.* event: the new values of what changed and
    their `previous_attributes`. `template`: an event built by event_build with the same
    time and actor, copied instead of building one (the renewal sweep's thousands)."""
    changed = {name: jsonable(getattr(subscription, name)) for name in previous}
    extra = dict(extra or {})
    data = {
        "status": subscription.status,
        **changed,
        "previous_attributes": {
            **{name: jsonable(value) for name, value in previous.items()},
            **extra.pop("previous_attributes", {}),
        },
        **extra,
    }
    if template is not None:
        built = Event.__new__(Event)
        built.__dict__ = {**template.__dict__, "type": type, "data": data,
                          "subscription_id": subscription.pk}
        built._state = ModelState()
    else:
        built = event_build(type, now=now, actor=actor, subscription_id=subscription.pk,
                            data=data)
    built.customer_id = subscription.customer_id  # no Customer loaded for it
    return built


def subscription_transition(
    subscription: Subscription,
    target: str,
    *,
    now: datetime,
    actor: Actor,
    fields: dict | None = None,
    data: dict | None = None,
    event: str | None = None,
) -> Subscription:
    """Move a subscription to `target` (or keep its status and change `fields`): the one
    door. The row changes only if its status is still the one the caller saw."""
    check_transition(subscription.status, target)
    updates = {**(fields or {}), "status": target}
    previous = {
        name: getattr(subscription, name) for name in updates
        if getattr(subscription, name) != updates[name]
    }
    with transaction.atomic(savepoint=False):
        changed = Subscription.objects.filter(
            pk=subscription.pk, status=subscription.status
        ).update(**updates)
        if changed == 1:
            for name, value in updates.items():
                setattr(subscription, name, value)
            type = event or event_type(previous.get("status", target), target)
            events_save([
                change_event(subscription, type, previous, now=now, actor=actor, extra=data)
            ])
    if changed != 1:
        raise InvalidTransition(
            _("Subscription %(s)s was changed by someone else meanwhile; reload and try again.")
            % {"s": subscription}
        )
    return subscription


def transition_in_memory(
    subscription: Subscription, target: str, *, at: datetime, actor: Actor, events: list,
    fields: dict | None = None, data: dict | None = None, template: Event | None = None,
) -> dict:
    """The door for set-based paths (the renewal sweep): apply the change to a
    subscription the caller holds locked, queue its event in `events`; the caller writes
    both. Returns the fields set."""
    check_transition(subscription.status, target)
    updates = {**(fields or {}), "status": target}
    previous = {
        name: getattr(subscription, name) for name in updates
        if getattr(subscription, name) != updates[name]
    }
    for name, value in updates.items():
        setattr(subscription, name, value)
    type = event_type(previous.get("status", target), target)
    events.append(change_event(subscription, type, previous, now=at, actor=actor, extra=data,
                               template=template))
    return updates
