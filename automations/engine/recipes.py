"""The three recipes of the specification, as templates staff install in one click
(installed disabled; seed_demo installs and enables them)."""

from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.errors import DomainError

from .models import Automation, AutomationStep
from .services import automation_publish, automation_set_enabled


@dataclass(frozen=True)
class Recipe:
    key: str
    name: object
    description: object
    build: object  # build() -> dict(trigger, days, conditions, steps)


def _annual() -> dict:
    return {
        "trigger": "subscription_payment_failed",
        "days": None,
        "conditions": {"all": [{"field": "subscription.interval", "op": "eq", "value": "year"}]},
        "steps": [
            {"kind": "start_retry_policy", "params": {
                "mode": "smart", "max_retries": 8, "window_days": 60,
                "after_last_retry": "leave_past_due",
                # The steps below decide, not the billing settings.
                "subscription_after_last_retry": "leave_past_due"}},
            {"kind": "wait", "params": {"days": 7}},
            {"kind": "cancel_subscription", "params": {"when": "now"}},
            {"kind": "mark_uncollectible", "params": {}},
        ],
    }


def team_address() -> str:
    """The collections team: the overdue alerts' recipients, else collections@ the
    company's domain, else the first staff user with an address."""
    from django.contrib.auth import get_user_model

    from ..notifications.models import NotificationSettings
    from ..notifications.recipients import company_email_domain

    configured = NotificationSettings.load().alert_recipients.strip()
    if configured:
        return configured
    domain = company_email_domain()
    if domain:
        return f"collections@{domain}"
    staff = (get_user_model().objects.filter(is_staff=True, is_active=True)
             .exclude(email="").order_by("pk").values_list("email", flat=True).first())
    if staff:
        return staff
    raise DomainError(_("Who is the collections team? Set the overdue alerts' recipients, "
                        "COMPANY_EMAIL_DOMAIN or a support address on the branding first."))


def _large_past_due() -> dict:
    return {
        "trigger": "invoice_past_due",
        "days": 7,
        "conditions": {"all": [{"field": "invoice.total", "op": "gt", "value": 50000,
                                "currency": "USD"}]},
        "steps": [
            {"kind": "email_team", "params": {
                "to": team_address(),
                "memo": "Invoice over $500 past due by {days_past_due} days: {invoice}, "
                        "{customer}, {amount} remaining."}},
        ],
    }


def _cancellation() -> dict:
    return {
        "trigger": "subscription_canceled",
        "days": None,
        "conditions": {},
        "steps": [{"kind": "email_customer", "params": {"template": "subscription_canceled",
                                                        "survey_url": ""}}],
    }


RECIPES = {
    recipe.key: recipe
    for recipe in [
        Recipe("annual_dunning", gettext_lazy("Annual subscribers: dunning"),
               gettext_lazy("When a subscription payment fails and the billing interval is "
                            "year: Smart Retries up to 8 times within 2 months, then 7 days "
                            "for manual outreach, then cancel the subscription and mark the "
                            "invoice uncollectible."), _annual),
        Recipe("large_past_due", gettext_lazy("Large invoice past due: alert the team"),
               gettext_lazy("When an invoice over $500 is 7 days past due: email the "
                            "collections team."), _large_past_due),
        Recipe("cancellation_email", gettext_lazy("Cancellation confirmation"),
               gettext_lazy("When a subscription is canceled: email the customer the "
                            "cancellation date and a link to a short survey."), _cancellation),
    ]
}


def recipe_install(key: str, *, now: datetime, enabled: bool = False) -> Automation:
    """Create the recipe's automation (disabled unless asked), published. A second
    install of the same recipe gets a numbered name."""
    recipe = RECIPES.get(key)
    if recipe is None:
        raise DomainError(_("Unknown recipe %(k)s.") % {"k": key})
    spec = recipe.build()
    with transaction.atomic():
        name, n = str(recipe.name), 1
        while Automation.objects.filter(name=name).exists():
            n += 1
            name = f"{recipe.name} ({n})"
        automation = Automation.objects.create(
            name=name, trigger=spec["trigger"], days=spec["days"],
            conditions=spec["conditions"], recipe=key, created_at=now,
        )
        AutomationStep.objects.bulk_create(
            AutomationStep(automation=automation, position=i, kind=s["kind"], params=s["params"])
            for i, s in enumerate(spec["steps"], start=1)
        )
        automation_publish(automation, now=now)
        if enabled:
            automation_set_enabled(automation, enabled=True, now=now)
    return automation


def recipes_demo(*, now: datetime, customers=None) -> str:
    """seed_demo: the three recipes, installed and enabled."""
    installed = [recipe_install(key, now=now, enabled=True) for key in RECIPES]
    return "Automations installed and enabled: " + ", ".join(a.name for a in installed) + "."
