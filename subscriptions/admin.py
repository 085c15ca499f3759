"""The subscriptions admin: products with their prices inline, subscriptions with their
items inline, and the buttons staff use (cancel, pause, resume, reactivate, change with
the proration preview). Every button calls a domain function of services.py."""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from customers.admin import reader_locale
from customers.clock import system_now
from customers.money import format_money

from .models import Price, Product, Subscription, SubscriptionInvoice, SubscriptionItem


class PriceInline(admin.TabularInline):
    model = Price
    extra = 0
    fields = ("nickname", "currency", "unit_amount", "type", "recurring_interval",
              "recurring_interval_count", "tax_behavior", "active")
    show_change_link = True


@admin.register(Product)
class ProductAdmin(admin.ModelAdmin):
    list_display = ("name", "active", "price_count")
    list_filter = ("active",)
    search_fields = ("name", "description")
    inlines = [PriceInline]

    @admin.display(description=_("prices"))
    def price_count(self, product):
        return product.prices.count()

    def save_model(self, request, obj, form, change):
        if obj.created_at is None:
            obj.created_at = system_now()
        super().save_model(request, obj, form, change)

    def save_formset(self, request, form, formset, change):
        for price in formset.save(commit=False):
            if price.created_at is None:
                price.created_at = system_now()
            price.save()
        formset.save_m2m()
        for obj in formset.deleted_objects:
            obj.delete()


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    list_display = ("__str__", "product", "currency", "amount", "type", "recurring_interval",
                    "recurring_interval_count", "active")
    list_filter = ("active", "type", "currency", "recurring_interval", "product")
    list_select_related = ("product",)
    search_fields = ("nickname", "product__name")
    autocomplete_fields = ("product",)
    filter_horizontal = ("tax_rates",)

    @admin.display(description=_("unit amount"), ordering="unit_amount")
    def amount(self, price):
        return format_money(price.unit_amount, price.currency, reader_locale())

    def save_model(self, request, obj, form, change):
        if obj.created_at is None:
            obj.created_at = system_now()
        super().save_model(request, obj, form, change)


class ItemInline(admin.TabularInline):
    model = SubscriptionItem
    extra = 0
    fields = ("price", "quantity")
    readonly_fields = ("price", "quantity")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class BilledPeriodInline(admin.TabularInline):
    model = SubscriptionInvoice
    extra = 0
    fields = ("invoice", "billing_reason", "period_start", "period_end")
    readonly_fields = fields
    can_delete = False
    ordering = ("-period_start",)
    verbose_name_plural = _("invoices")

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ("__str__", "customer", "status", "currency", "current_period_end",
                    "cancel_at_period_end", "created_at")
    list_filter = ("status", "currency", "collection_method", "cancel_at_period_end")
    list_select_related = ("customer",)
    search_fields = ("=id", "customer__name", "customer__email", "customer__invoice_prefix")
    date_hierarchy = "created_at"
    readonly_fields = (
        "customer", "status", "currency", "billing_cycle_anchor", "current_period_start",
        "current_period_end", "trial_start", "trial_end", "cancel_at_period_end", "cancel_at",
        "canceled_at", "ended_at", "cancellation_reason", "cancellation_feedback",
        "cancellation_comment", "pause_collection", "pause_resumes_at", "latest_invoice",
        "created_at",
    )
    fields = (
        "customer", "status", "currency", "collection_method", "days_until_due",
        "default_payment_method", *readonly_fields[3:], "metadata",
    )
    inlines = [ItemInline, BilledPeriodInline]

    def has_add_permission(self, request):
        return False  # subscriptions are created through subscription_create
