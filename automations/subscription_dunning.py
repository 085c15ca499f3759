"""What happens to a subscription when the last retry of its invoice fails (DESIGN.md
section 7): the billing settings say (cancel, mark unpaid, pause, leave past due), and a
named retry policy may say otherwise for its segments.

The collection engine (invoices.collection) announces a failed automatic payment with no
retry left as `invoice.payment_failed` whose `next_payment_attempt` is empty; this
subscriber hears it (invoices.events.subscribe) in the same transaction and acts through
the subscriptions' own doors.
"""

from django.db import transaction

from customers.actors import Actor
from customers.errors import DomainError
from invoices.models import Event
from subscriptions.models import Subscription
from subscriptions.services import (
    subscription_cancel,
    subscription_mark_unpaid,
    subscription_pause_collection,
)

from .engine.retrying import invoice_policies
from .models import BillingSettings, RetryPolicy, SubscriptionAfterLastRetry
from .retries import policy_for

AFTER_LAST_RETRY = Actor.system("after the last retry")


def last_retry_failed(event: Event) -> bool:
    data = event.data
    return (
        event.type == "invoice.payment_failed"
        and event.subscription_id is not None
        and data.get("source") == "automatic"
        and not data.get("next_payment_attempt")
        and not data.get("hard_decline")
    )


def on_events(events: list[Event]) -> None:
    failed = [event for event in events if last_retry_failed(event)]
    if not failed:
        return
    settings = BillingSettings.load()
    policies = list(RetryPolicy.objects.all())
    subscriptions = Subscription.objects.select_related("customer").in_bulk(
        {event.subscription_id for event in failed}
    )
    # A policy an automation started for the invoice replaces the default one here too.
    started = invoice_policies({event.invoice_id for event in failed})
    for event in failed:
        subscription = subscriptions.get(event.subscription_id)
        if subscription is None:
            continue
        policy = started.get(event.invoice_id) or policy_for(
            subscription.customer, settings, policies)
        action = policy.subscription_after_last_retry or settings.subscription_after_last_retry
        subscription_after_last_retry(subscription, action, now=event.created_at)


def subscription_after_last_retry(subscription: Subscription, action: str, *, now) -> bool:
    """Apply `action`; a subscription that no longer allows it (canceled meanwhile,
    already unpaid) is left as it is. Returns whether something changed."""
    A = SubscriptionAfterLastRetry
    try:
        with transaction.atomic():
            if action == A.CANCEL:
                subscription_cancel(subscription, now=now, actor=AFTER_LAST_RETRY,
                                    reason=Subscription.CancellationReason.PAYMENT_FAILED)
            elif action == A.MARK_UNPAID:
                subscription_mark_unpaid(subscription, now=now, actor=AFTER_LAST_RETRY)
            elif action == A.PAUSE:
                subscription_pause_collection(
                    subscription, now=now, actor=AFTER_LAST_RETRY,
                    behavior=Subscription.PauseBehavior.KEEP_AS_DRAFT,
                )
            else:
                return False
    except DomainError:
        return False
    return True
