"""What a subscription's invoices do to it (invoices announce, subscriptions listen):

- the first failed payment of its invoice: past_due;
- its invoice paid: an incomplete subscription becomes active, and so does a past-due or
  unpaid one when no other invoice of it is still past due.

Runs inside the transaction that wrote the events, set-based, and never refuses: a
subscription another transaction changed meanwhile is left as it is.
"""

from invoices.bulkwrite import rows_update
from invoices.events import events_save
from invoices.models import Event, Invoice

from .models import Subscription
from .transitions import S, transition_in_memory

WATCHED = {"invoice.payment_failed", "invoice.paid"}
PAST_DUE_FROM = {S.ACTIVE, S.TRIALING}
ACTIVE_FROM = {S.INCOMPLETE, S.PAST_DUE, S.UNPAID}


def on_invoice_events(events: list[Event]) -> None:
    relevant = [
        event for event in events
        if event.type in WATCHED and event.subscription_id is not None
        and event.invoice_id is not None
    ]
    if not relevant:
        return
    subscriptions = {
        subscription.pk: subscription for subscription in
        Subscription.objects.select_for_update()
        .filter(pk__in={event.subscription_id for event in relevant}).order_by("pk")
    }
    still_due = _subscriptions_with_past_due_invoices(
        [e for e in relevant if e.type == "invoice.paid"]
    )
    out, changed, fields = [], {}, set()
    for event in relevant:
        subscription = subscriptions.get(event.subscription_id)
        if subscription is None:
            continue
        data = {"invoice": event.invoice_id, "cause": event.type}
        if event.type == "invoice.payment_failed":
            if event.data.get("source") != "automatic" or subscription.status not in PAST_DUE_FROM:
                continue
            target = S.PAST_DUE
        else:
            if subscription.status not in ACTIVE_FROM or subscription.pk in still_due:
                continue
            target = S.ACTIVE
        fields |= set(transition_in_memory(
            subscription, target, at=event.created_at, actor=_actor(event), events=out,
            data=data,
        ))
        changed[subscription.pk] = subscription
    if changed:
        rows_update(Subscription, list(changed.values()), sorted(fields))
        events_save(out)


def _subscriptions_with_past_due_invoices(paid: list[Event]) -> set[int]:
    if not paid:
        return set()
    return set(
        Invoice.objects.filter(
            subscription_id__in={e.subscription_id for e in paid}, status=Invoice.Status.OPEN,
            past_due_at__isnull=False,
        ).exclude(pk__in=[e.invoice_id for e in paid])
        .filter(past_due_at__lte=max(e.created_at for e in paid))
        .values_list("subscription_id", flat=True)
    )


def _actor(event: Event):
    from customers.actors import Actor

    return Actor(kind=event.actor_kind, user_id=event.actor_user_id, label=event.actor_label)
