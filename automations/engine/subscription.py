"""The subscription parts of the engine, plugged into its registries: triggers,
conditions (billing interval, product, price, status, metadata), steps (cancel, pause
collection) and the cancellation email. Subscriptions are loaded set-based, with their
items' prices and products."""

from datetime import datetime, timedelta

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.money import is_int
from subscriptions.models import Subscription
from subscriptions.services import subscription_cancel, subscription_pause_collection

from . import runs, subjects
from .conditions import TEXT, Field, field_register
from .steps import (
    CUSTOMER_TEMPLATES,
    StepContext,
    StepError,
    StepKind,
    _unknown_keys,
    step_register,
)
from .subjects import Subject
from .triggers import CUSTOMER, INVOICE, PAYMENT, SUBSCRIPTION, Trigger, trigger_register

SUB = frozenset({SUBSCRIPTION, CUSTOMER})
REASONS = Subscription.CancellationReason


def _on_a_subscription(subject: Subject) -> bool:
    return subject.subscription is not None


for _trigger in [
    Trigger(
        "subscription_payment_failed",
        gettext_lazy("a subscription payment fails"),
        ("invoice.payment_failed",),
        frozenset({INVOICE, CUSTOMER, PAYMENT, SUBSCRIPTION}),
        settles=True,
        applies=_on_a_subscription,
    ),
    Trigger(
        "subscription_created",
        gettext_lazy("a subscription is created"),
        ("customer.subscription.created",),
        SUB,
    ),
    Trigger(
        "subscription_canceled",
        gettext_lazy("a subscription is canceled"),
        ("customer.subscription.deleted",),
        SUB,
    ),
    Trigger(
        "subscription_paused",
        gettext_lazy("a subscription is paused"),
        ("customer.subscription.paused",),
        SUB,
    ),
    Trigger(
        "subscription_trial_ending",
        gettext_lazy("a subscription's trial ends soon"),
        ("customer.subscription.trial_will_end",),
        SUB,
    ),
    Trigger(
        "renewal_upcoming", gettext_lazy("a subscription renews soon"), ("invoice.upcoming",), SUB
    ),
]:
    trigger_register(_trigger)


# --- loading ---------------------------------------------------------------------------


def subscriptions_in_bulk(ids) -> dict[int, Subscription]:
    ids = set(ids) - {None}
    if not ids:
        return {}
    return Subscription.objects.prefetch_related("items__price__product").in_bulk(ids)


def _subscription_id(subject: Subject):
    if subject.event is not None and subject.event.subscription_id:
        return subject.event.subscription_id
    return subject.invoice.subscription_id if subject.invoice is not None else None


def subjects_subscriptions(batch: list[Subject]) -> None:
    found = subscriptions_in_bulk(_subscription_id(s) for s in batch)
    for subject in batch:
        subject.subscription = found.get(_subscription_id(subject))


def runs_subscriptions(run_list, by_run: dict) -> None:
    found = subscriptions_in_bulk(run.subscription_id for run in run_list)
    for run in run_list:
        by_run[run.pk].subscription = found.get(run.subscription_id)


subjects.SUBJECT_LOADERS.append(subjects_subscriptions)
runs.SUBJECT_REFRESHERS.append(runs_subscriptions)


# --- conditions ------------------------------------------------------------------------


def _first_price(subject: Subject):
    if subject.subscription is None:
        return None
    items = list(subject.subscription.items.all())
    return items[0].price if items else None


def _interval(subject: Subject):
    price = _first_price(subject)
    return price.recurring_interval if price is not None else None


for _field in [
    Field(
        "subscription.interval",
        gettext_lazy("subscription's billing interval"),
        TEXT,
        SUBSCRIPTION,
        _interval,
    ),
    Field(
        "subscription.product",
        gettext_lazy("subscription's product"),
        TEXT,
        SUBSCRIPTION,
        lambda s: _first_price(s).product.name if _first_price(s) else None,
    ),
    Field(
        "subscription.price",
        gettext_lazy("subscription's price (id)"),
        TEXT,
        SUBSCRIPTION,
        lambda s: str(_first_price(s).pk) if _first_price(s) else None,
    ),
    Field(
        "subscription.status",
        gettext_lazy("subscription status"),
        TEXT,
        SUBSCRIPTION,
        lambda s: s.subscription.status if s.subscription else None,
    ),
]:
    field_register(_field)
field_register(
    Field(
        "subscription.metadata",
        gettext_lazy("subscription metadata"),
        TEXT,
        SUBSCRIPTION,
        lambda s: s.subscription.metadata if s.subscription else None,
    ),
    prefix=True,
)


# --- steps -----------------------------------------------------------------------------


def _subscription_of(context: StepContext) -> Subscription:
    if context.subject.subscription is None:
        raise StepError(_("This run has no subscription."))
    return context.subject.subscription


def cancel_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"when", "reason"})
    if params.get("when", "now") not in ("now", "period_end"):
        errors.append(_('Cancel "now" or at the "period_end" (when).'))
    if params.get("reason", REASONS.PAYMENT_FAILED) not in REASONS.values:
        errors.append(_("The reason is one of %(r)s.") % {"r": ", ".join(REASONS.values)})
    return errors


def cancel_describe(params: dict) -> str:
    if params.get("when") == "period_end":
        return _("cancel the subscription at the end of its period")
    return _("cancel the subscription")


def cancel_apply(context: StepContext, params: dict) -> str:
    subscription = _subscription_of(context)
    at_end = params.get("when") == "period_end"
    subscription_cancel(
        subscription,
        now=context.now,
        actor=context.actor,
        at_period_end=at_end,
        reason=params.get("reason", REASONS.PAYMENT_FAILED),
    )
    return (
        _("Subscription set to cancel at the end of its period.")
        if at_end
        else _("The subscription is canceled now.")
    )


BEHAVIORS = Subscription.PauseBehavior


def pause_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"behavior", "resume_after_days"})
    if params.get("behavior") not in BEHAVIORS.values:
        errors.append(
            _(
                "Pausing collection keeps, voids or marks uncollectible the invoices "
                "meanwhile (behavior: %(b)s)."
            )
            % {"b": ", ".join(BEHAVIORS.values)}
        )
    days = params.get("resume_after_days")
    if days is not None and not (is_int(days) and 1 <= days <= 365):
        errors.append(_("Resume after 1 to 365 days, or leave it out."))
    return errors


def pause_apply(context: StepContext, params: dict) -> str:
    subscription = _subscription_of(context)
    days = params.get("resume_after_days")
    resumes_at: datetime | None = context.now + timedelta(days=days) if days else None
    subscription_pause_collection(
        subscription,
        now=context.now,
        actor=context.actor,
        behavior=params["behavior"],
        resumes_at=resumes_at,
    )
    return _("Collection paused (%(b)s).") % {"b": params["behavior"]}


step_register(
    StepKind(
        "cancel_subscription",
        gettext_lazy("Cancel its subscription"),
        SUBSCRIPTION,
        cancel_validate,
        cancel_describe,
        cancel_apply,
    )
)
step_register(
    StepKind(
        "pause_collection",
        gettext_lazy("Pause the subscription's collection"),
        SUBSCRIPTION,
        pause_validate,
        lambda p: _("pause collection (%(b)s)") % {"b": p.get("behavior")},
        pause_apply,
    )
)


# --- the cancellation email ------------------------------------------------------------


def canceled_message(context: StepContext, params: dict):
    """The subscription notifications' own cancellation email (same outbox key: queued
    by both, sent once), with the step's survey link when it has one."""
    from invoices.models import Event

    from ..notifications.models import NotificationSettings
    from ..notifications.subscription_emails import _message

    subscription = _subscription_of(context)
    event = Event.objects.filter(pk=context.run.event_id).first()
    if event is None or event.type != "customer.subscription.deleted":
        raise StepError(_("This run was not started by a canceled subscription."))
    survey = params.get("survey_url") or NotificationSettings.load().cancellation_survey_url
    return _message(event, subscription, survey)


CUSTOMER_TEMPLATES["subscription_canceled"] = (SUBSCRIPTION, canceled_message)
