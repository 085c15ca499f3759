from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class InvoicesConfig(AppConfig):
    name = "invoices"
    verbose_name = _("Invoicing")

    def ready(self):
        from .documents.services import documents_request
        from .events import subscribe

        subscribe(documents_request)
