"""The subscription emails, queued from the event log in the transaction of the event:
renewal coming up (invoice.upcoming), trial ending (customer.subscription.trial_will_end),
card expiring before the next renewal (checked when a period starts), canceled (or set to
cancel at the end of its period, with the survey link when set), paused and resumed.

Set-based: the renewal sweep hands over a thousand events at once; one query loads their
subscriptions, customers and items."""

from datetime import UTC, datetime

from django.db.models import Prefetch

from invoices.models import Event
from subscriptions.models import Subscription, SubscriptionItem

from .models import NotificationSettings
from .outbox import outbox_message, outbox_write

UPDATED = "customer.subscription.updated"
KIND_OF = {
    "invoice.upcoming": "subscription_renewal_upcoming",
    "customer.subscription.trial_will_end": "subscription_trial_ending",
    "customer.subscription.deleted": "subscription_canceled",
    "customer.subscription.paused": "subscription_paused",
    "customer.subscription.resumed": "subscription_resumed",
}


def notice_days_factory():
    """For subscriptions.notices: the days before a renewal it is announced."""
    settings = NotificationSettings.load()
    days = settings.upcoming_renewal_days or None
    every = settings.upcoming_renewal_all_intervals
    return lambda interval, count: days if (every or interval == "year") else None


def _wanted(event: Event) -> bool:
    if event.subscription_id is None:
        return False
    if event.type in KIND_OF:
        return event.type != "customer.subscription.deleted" or (
            event.data.get("status") == Subscription.Status.CANCELED
        )
    if event.type != UPDATED:
        return False
    previous = event.data.get("previous_attributes") or {}
    return "current_period_end" in previous or (
        "cancel_at_period_end" in previous and event.data.get("cancel_at_period_end")
    )


def on_events(events: list[Event]) -> None:
    relevant = [event for event in events if _wanted(event)]
    if not relevant:
        return
    renewed = {event.subscription_id for event in relevant if _renewal(event)}
    if renewed:  # most renewals email nothing: keep only those whose card expires
        expiring = _with_expiring_cards(renewed)
        relevant = [event for event in relevant
                    if not _renewal(event) or event.subscription_id in expiring]
        if not relevant:
            return
    subscriptions = Subscription.objects.select_related(
        "customer__default_payment_method", "default_payment_method"
    ).prefetch_related(
        Prefetch("items", SubscriptionItem.objects.select_related("price__product"))
    ).in_bulk({event.subscription_id for event in relevant})
    survey = NotificationSettings.load().cancellation_survey_url
    messages = []
    for event in relevant:
        subscription = subscriptions.get(event.subscription_id)
        if subscription is None or not subscription.customer.email:
            continue
        message = _message(event, subscription, survey)
        if message is not None:
            messages.append(message)
    outbox_write(messages)


def _message(event: Event, subscription: Subscription, survey: str):
    data = event.data
    kind = KIND_OF.get(event.type)
    context = _base(subscription)
    if event.type == UPDATED:
        if "current_period_end" in (data.get("previous_attributes") or {}):
            card = _expiring_card(subscription)
            if card is None:
                return None
            kind = "subscription_card_expiring"
            context.update(card=card, renewal_date=subscription.current_period_end.isoformat())
            key = f"subscription_card_expiring:{subscription.pk}:{subscription.period_index}"
        else:
            kind = "subscription_canceled"
            key = f"subscription_canceled:{subscription.pk}:{event.created_at.isoformat()}"
            context.update(cancellation_date=data.get("cancel_at"), survey_url=survey)
    else:
        key = f"{kind}:{subscription.pk}:{event.created_at.isoformat()}"
        if kind == "subscription_renewal_upcoming":
            context["renewal_date"] = data.get("next_payment_at")
        elif kind == "subscription_trial_ending":
            context["trial_end_date"] = data.get("trial_end")
        elif kind == "subscription_canceled":
            context.update(cancellation_date=(subscription.ended_at or event.created_at)
                           .isoformat(), survey_url=survey)
        elif kind == "subscription_paused":
            resumes = subscription.pause_resumes_at
            context["resume_date"] = resumes.isoformat() if resumes else None
        elif kind == "subscription_resumed":
            context["renewal_date"] = subscription.current_period_end.isoformat()
    return outbox_message(key, kind=kind, now=event.created_at,
                          customer_id=subscription.customer_id, context=context)


def _renewal(event: Event) -> bool:
    return event.type == UPDATED and "current_period_end" in (
        event.data.get("previous_attributes") or {}
    )


def _with_expiring_cards(ids: set[int]) -> set[int]:
    """Of these subscriptions, those whose card expires before the next renewal: one
    query of plain values (a renewal batch is a thousand subscriptions)."""
    rows = Subscription.objects.filter(pk__in=ids).values_list(
        "pk", "current_period_end",
        "default_payment_method__exp_year", "default_payment_method__exp_month",
        "customer__default_payment_method__exp_year",
        "customer__default_payment_method__exp_month",
    )
    expiring = set()
    for pk, period_end, year, month, customer_year, customer_month in rows:
        if year is None:
            year, month = customer_year, customer_month
        if year and month and _expires_at(year, month) <= period_end:
            expiring.add(pk)
    return expiring


def _expires_at(year: int, month: int) -> datetime:
    """A card is valid through the end of its expiry month."""
    year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC)


def _base(subscription: Subscription) -> dict:
    items = list(subscription.items.all())
    return {
        "customer_name": subscription.customer.name,
        "timezone": subscription.customer.timezone,
        "plan": ", ".join(f"{item.quantity} × {item.price}" for item in items),
        "amount": sum(item.price.unit_amount * item.quantity for item in items),
        "currency": subscription.currency,
    }


def _expiring_card(subscription: Subscription) -> str | None:
    """The card that will be charged, when it expires before the next renewal."""
    method = subscription.default_payment_method or subscription.customer.default_payment_method
    if method is None or not method.exp_year or not method.exp_month:
        return None
    if _expires_at(method.exp_year, method.exp_month) > subscription.current_period_end:
        return None
    return f"{method} ({method.exp_month:02d}/{method.exp_year})"

