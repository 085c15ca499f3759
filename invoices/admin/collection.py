"""Payment methods and payment attempts in the admin. Payment methods are added and
detached through the domain (invoices.collection), which resumes held collection."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.translation import gettext_lazy, ngettext

from customers.clock import now_for
from customers.errors import DomainError
from customers.models import PaymentMethod

from ..collection import payment_method_add, payment_method_detach, payment_method_reenable
from ..models import PaymentAttempt
from ..pagination import CappedCountPaginator
from .common import DomainRefusalAdmin, ReadOnlyAdmin, money, staff
from .invoice import customer_kinds


class PaymentMethodAddForm(forms.ModelForm):
    make_default = forms.BooleanField(
        label=gettext_lazy("make it the default"), required=False, initial=True
    )

    class Meta:
        model = PaymentMethod
        fields = ["customer", "type", "gateway_reference", "brand", "last4", "exp_month",
                  "exp_year"]
        help_texts = {
            "gateway_reference": gettext_lazy(
                "The payment provider's reference (a Stripe pm_… id; a simulated card token "
                "such as sim_4242). Never a card number."
            ),
        }


@admin.register(PaymentMethod)
class PaymentMethodAdmin(DomainRefusalAdmin):
    list_display = ["__str__", "customer", "type", "status", "expiry", "unusable_code",
                    "unusable_at", "created_at"]
    list_filter = ["type", "status", "unusable_code"]
    list_select_related = ["customer"]
    search_fields = ["customer__name", "customer__email", "last4"]
    autocomplete_fields = ["customer"]
    actions = ["detach_selected", "reenable_selected"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    def get_form(self, request, obj=None, change=False, **kwargs):
        if obj is None:
            kwargs["form"] = PaymentMethodAddForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return ["customer", "type", "gateway_reference", "brand", "last4", "exp_month",
                "exp_year", "status", "unusable_code", "unusable_at", "created_at"]

    def has_delete_permission(self, request, obj=None):
        return False  # attempts point at them: detach instead

    @admin.display(description=gettext_lazy("expires"))
    def expiry(self, method):
        return f"{method.exp_month:02d}/{method.exp_year}" if method.exp_year else "—"

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        customer = data["customer"]
        added = payment_method_add(
            customer,
            type=data["type"],
            gateway_reference=data["gateway_reference"],
            brand=data["brand"],
            last4=data["last4"],
            exp_month=data["exp_month"],
            exp_year=data["exp_year"],
            make_default=data["make_default"],
            now=now_for(customer),
            actor=staff(request),
        )
        obj.pk = added.pk

    @admin.action(description=gettext_lazy("Detach selected payment methods"),
                  permissions=["change"])
    def detach_selected(self, request, queryset):
        done = 0
        for method in queryset.select_related("customer"):
            payment_method_detach(method, now=now_for(method.customer), actor=staff(request))
            done += 1
        self.message_user(request, ngettext(
            "%(count)d payment method detached.", "%(count)d payment methods detached.", done,
        ) % {"count": done}, messages.SUCCESS)


    @admin.action(description=gettext_lazy("Re-enable selected hard-declined payment methods"),
                  permissions=["change"])
    def reenable_selected(self, request, queryset):
        done = 0
        try:
            with transaction.atomic():  # one refused: none re-enabled
                for method in queryset.select_related("customer"):
                    payment_method_reenable(method, now=now_for(method.customer),
                                            actor=staff(request))
                    done += 1
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return
        self.message_user(request, ngettext(
            "%(count)d payment method re-enabled.", "%(count)d payment methods re-enabled.",
            done,
        ) % {"count": done}, messages.SUCCESS)


class RecoveredFilter(admin.SimpleListFilter):
    """Retries of a declined payment (the dashboard's "recovered" links here)."""

    title = gettext_lazy("retry of a decline")
    parameter_name = "recovered"

    def lookups(self, request, model_admin):
        return [("yes", gettext_lazy("Yes"))]

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.exclude(retry_of_decline_code="")
        return queryset


class AttemptCurrencyFilter(admin.SimpleListFilter):
    title = gettext_lazy("currency")
    parameter_name = "currency"

    def lookups(self, request, model_admin):
        return [(c, c) for c in sorted({c for c, _s in customer_kinds(request)})]

    def queryset(self, request, queryset):
        return queryset.filter(currency=self.value()) if self.value() else queryset


@admin.register(PaymentAttempt)
class PaymentAttemptAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "invoice", "customer", "source", "method_label",
                    "amount_display", "status", "decline_code", "duration_ms"]
    list_filter = ["status", "source", RecoveredFilter, AttemptCurrencyFilter, "hard_decline",
                   "decline_code"]
    list_select_related = ["invoice", "customer"]
    search_fields = ["invoice__number", "idempotency_key", "gateway_reference"]
    show_full_result_count = False
    paginator = CappedCountPaginator

    @admin.display(description=gettext_lazy("amount"), ordering="amount")
    def amount_display(self, attempt):
        return money(attempt.amount, attempt.currency)
