"""The billing settings screen, retry policies, and what Smart Retries have learned."""

from django import forms
from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from customers.admin import ReadOnlyAdmin, SingletonAdmin
from customers.admin_base import ModelAdmin
from customers.fields import AmountsByCurrencyField, CommaListField

from .models import BillingSettings, RetryPolicy, RetryStat
from .retries import retry_calibration

SCHEDULED_RETRIES_NOTE = _(
    "Changing these settings never moves retries already planned: each keeps the time "
    "shown on its invoice, and the new settings apply from the next failed attempt on. "
    "Invoices on hold for a hard decline stay on hold until the customer adds a payment "
    "method."
)


class BillingSettingsForm(forms.ModelForm):
    partial_payment_tolerance = AmountsByCurrencyField(
        label=_("Reconcile partial payments within"),
        help_text=_("Per currency, in its own units (e.g. EUR 1.00): a payment that leaves at "
                    "most this much unpaid closes the invoice with a credit note. Currencies "
                    "not listed are never reconciled."),
    )

    class Meta:
        model = BillingSettings
        fields = [
            "automatic_collection", "default_retry_policy", "uncollectible_after_days",
            "partial_payment_tolerance",
        ]


class RetryPolicyForm(forms.ModelForm):
    custom_schedule = CommaListField(
        item=int, label=_("Custom schedule"),
        help_text=_("Custom mode: days after the previous attempt, e.g. 1, 3, 5, 7."),
    )
    customer_segments = CommaListField(
        label=_("Customer segments"),
        help_text=_("Customers of these segments (separated by commas) use this policy "
                    "instead of the default."),
    )

    class Meta:
        model = RetryPolicy
        fields = [
            "name", "mode", "max_retries", "window_days", "custom_schedule", "after_last_retry",
            "customer_segments",
        ]


@admin.register(BillingSettings)
class BillingSettingsAdmin(SingletonAdmin):
    """A singleton: the list goes straight to the one row, which cannot be deleted."""

    form = BillingSettingsForm

    fieldsets = [
        (_("Automatic collection"), {
            "fields": ["automatic_collection", "default_retry_policy", "policies_link"],
            "description": SCHEDULED_RETRIES_NOTE,
        }),
        (_("Past-due invoices"), {"fields": ["uncollectible_after_days"]}),
        (_("Subscriptions"), {"fields": ["subscription_after_last_retry"]}),
        (_("Partial payments"), {"fields": ["partial_payment_tolerance"]}),
    ]
    readonly_fields = ["policies_link"]

    @admin.display(description=_("retry policies"))
    def policies_link(self, obj):
        return format_html(
            '<a href="{}">{}</a>', reverse("admin:automations_retrypolicy_changelist"),
            _("Named retry policies, and the customer segments they apply to"),
        )


@admin.register(RetryPolicy)
class RetryPolicyAdmin(ModelAdmin):
    form = RetryPolicyForm
    list_display = ["name", "mode", "max_retries", "window_days", "custom_schedule",
                    "after_last_retry", "customer_segments"]
    fieldsets = [
        (None, {"fields": ["name", "mode"], "description": SCHEDULED_RETRIES_NOTE}),
        (_("Smart Retries and fixed schedule"), {"fields": ["max_retries", "window_days"]}),
        (_("Custom schedule"), {"fields": ["custom_schedule"]}),
        (None, {"fields": ["after_last_retry", "subscription_after_last_retry",
                           "customer_segments"]}),
    ]

    def has_delete_permission(self, request, obj=None):
        in_use = obj is not None and BillingSettings.objects.filter(
            default_retry_policy=obj
        ).exists()
        return not in_use and super().has_delete_permission(request, obj)


@admin.register(RetryStat)
class RetryStatAdmin(ReadOnlyAdmin):
    """What Smart Retries learned from this system's payments: read-only."""

    list_display = ["decline_code", "dimension", "bucket", "attempts", "successes", "rate"]
    list_filter = ["dimension", "decline_code"]
    ordering = ["decline_code", "dimension", "bucket"]

    change_list_template = "admin/automations/retrystat/change_list.html"

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "calibration": retry_calibration()}
        return super().changelist_view(request, extra_context)

    @admin.display(description=_("success rate"))
    def rate(self, stat):
        return f"{stat.successes / stat.attempts:.0%}" if stat.attempts else "—"
