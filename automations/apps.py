from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class AutomationsConfig(AppConfig):
    name = "automations"
    verbose_name = _("Collection")

    def ready(self):
        from invoices.collection import policy_register

        from .retries import SmartCollectionPolicy

        policy_register(SmartCollectionPolicy())
