"""Reference data and records: tax rates, invoicing settings, the event log."""


from django.contrib import admin
from django.db.models import Q
from django.utils.translation import gettext_lazy

from ..models import (
    Event,
    Invoice,
    InvoiceLine,
    InvoicingSettings,
    TaxRate,
)
from ..pagination import CappedCountPaginator
from ..transitions import S
from .common import (
    ModelAdmin,
    ReadOnlyAdmin,
    SingletonAdmin,
    data_summary,
)


def tax_rate_used_on_finalized(rate: TaxRate) -> bool:
    return InvoiceLine.objects.filter(tax_rates=rate).exclude(invoice__status=S.DRAFT).exists()


@admin.register(TaxRate)
class TaxRateAdmin(ModelAdmin):
    list_display = ["display_name", "percentage", "inclusive", "country", "category", "active"]
    list_filter = ["active", "inclusive", "country"]
    search_fields = ["display_name"]

    def get_readonly_fields(self, request, obj=None):
        # Finalized invoices carry this rate: changing it would rewrite their meaning.
        if obj is not None and tax_rate_used_on_finalized(obj):
            return ["percentage", "inclusive"]
        return []

    def has_delete_permission(self, request, obj=None):
        if obj is not None and tax_rate_used_on_finalized(obj):
            return False
        return super().has_delete_permission(request, obj)


@admin.register(InvoicingSettings)
class InvoicingSettingsAdmin(SingletonAdmin):
    pass


@admin.register(Event)
class EventAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "type", "invoice", "customer", "actor_display", "summary"]
    list_filter = ["type", "actor_kind"]
    list_select_related = ["invoice", "customer"]
    search_fields = ["invoice__number"]
    search_help_text = gettext_lazy("Invoice number (or its beginning).")
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description=gettext_lazy("actor"))
    def actor_display(self, event):
        return event.actor_label or event.get_actor_kind_display()

    @admin.display(description=gettext_lazy("data"))
    def summary(self, event):
        return data_summary(event.data)

    def get_search_results(self, request, queryset, search_term):
        term = search_term.strip().upper()
        if not term:
            return queryset, False
        invoices = Invoice.objects.filter(Q(number=term) | Q(number__startswith=term)).values("pk")
        return queryset.filter(invoice_id__in=invoices), False
