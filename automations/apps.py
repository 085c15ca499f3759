from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = _("Collection")

    def ready(self):
        from invoices.collection import policy_register
        from invoices.events import subscribe
        from invoices.management.commands.seed_demo import demo_extension_register
        from subscriptions.notices import notice_days_register

        from .engine import subscription  # noqa: F401  (its triggers, conditions, steps)
        from .engine import tasks as engine_tasks  # noqa: F401  (registers its task)
        from .engine.matching import on_events as engine_on_events
        from .engine.recipes import recipes_demo
        from .notifications import tasks  # noqa: F401  (registers the Celery tasks)
        from .notifications.subscription_emails import notice_days_factory
        from .notifications.subscription_emails import on_events as subscription_emails
        from .notifications.triggers import on_events
        from .retries import SmartCollectionPolicy
        from .subscription_dunning import on_events as after_last_retry

        policy_register(SmartCollectionPolicy())
        subscribe(on_events)
        subscribe(after_last_retry)
        subscribe(subscription_emails)
        notice_days_register(notice_days_factory)
        subscribe(engine_on_events)
        demo_extension_register(recipes_demo)
