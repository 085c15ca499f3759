from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SubscriptionsConfig(AppConfig):
    name = "subscriptions"
    verbose_name = _("Subscriptions")

    def ready(self):
        from invoices.events import subscribe
        from invoices.management.commands.seed_demo import demo_extension_register

        from . import tasks  # noqa: F401  (registers the Celery task)
        from .demo import demo_subscriptions_load
        from .subscribers import on_invoice_events

        subscribe(on_invoice_events)
        demo_extension_register(demo_subscriptions_load)
