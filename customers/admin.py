"""Customer admin: forms validate, customers.services and customers.ledger write."""

from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.forms.models import BaseInlineFormSet
from django.http import HttpResponseRedirect
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import translation
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.translation import gettext as _gettext
from django.utils.translation import gettext_lazy as _
from unfold import widgets as theme_widgets

from .actors import Actor
from .admin_base import AUTH_ADMINS, ModelAdmin, TabularInline, style_form
from .admin_money import format_amount
from .clock import now_for
from .errors import DomainError
from .forms import BalanceAdjustForm, CustomerForm
from .ledger import balance_transaction_create
from .models import BalanceTransaction, Customer, InvoicePrefix
from .services import customer_create, prefix_reserve

LATEST_BALANCE_TRANSACTIONS = 20


def reader_locale() -> str:
    """The locale of the person reading the admin, as Babel spells it (pt_BR)."""
    return translation.to_locale(translation.get_language() or "en")


def money(amount: int | None, currency: str) -> str:
    return "" if amount is None else format_amount(amount, currency, reader_locale())


class SingletonAdmin(ModelAdmin):
    """The admin of a one-row settings model (customers.singletons.Singleton): the list
    opens the row, created when missing; never an add form, never a delete."""

    def has_add_permission(self, request):
        # Answered without a query: every admin page asks, for its navigation sidebar.
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def changelist_view(self, request, extra_context=None):
        opts = self.model._meta
        row = self.model.load()
        return redirect(reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[row.pk]))


class LatestFirstFormSet(BaseInlineFormSet):
    """Only the latest lines: a customer's ledger can be long; the full list is one click away."""

    def get_queryset(self):
        if not hasattr(self, "_latest"):
            self._latest = super().get_queryset().order_by("-created_at", "-id")[
                :LATEST_BALANCE_TRANSACTIONS
            ]
        return self._latest


class MoneyColumnsMixin:
    @admin.display(description=_("amount"), ordering="amount")
    def amount_display(self, entry):
        return money(entry.amount, entry.currency)

    @admin.display(description=_("ending balance"), ordering="ending_balance")
    def ending_balance_display(self, entry):
        return money(entry.ending_balance, entry.currency)


class BalanceTransactionInline(MoneyColumnsMixin, TabularInline):
    model = BalanceTransaction
    formset = LatestFirstFormSet
    fields = (
        "created_at", "type", "amount_display", "ending_balance_display", "description",
        "reference", "actor",
    )
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = _("Latest balance transactions")

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# The theme's checkbox look (its select-all box has it), then Django's class the list's
# script selects rows by; escaped once (a kilobyte, for each row).
ROW_CHECKBOX_CLASSES = " ".join([*theme_widgets.CHECKBOX_CLASSES, "action-select"])
ROW_CHECKBOX = (
    f'<input type="checkbox" name="{ACTION_CHECKBOX_NAME}" value="{{}}" '
    f'class="{escape(ROW_CHECKBOX_CLASSES)}" aria-label="{{}}">'
)


class QuickCheckboxMixin:
    """The changelist's row checkbox written directly, styled as the theme's own: Django
    renders each one through the form widget templates, a fifth of a 100-row invoice
    list's CPU (10-15 ms, measured). Its label names the row, as Django's does."""

    def action_checkbox(self, obj):
        label = format_html(translation.gettext("Select this object for an action - {}"), obj)
        return mark_safe(ROW_CHECKBOX.format(escape(obj.pk), label))


class DomainRefusalAdmin(ModelAdmin):
    """The admin saves in a transaction: a DomainError raised while saving (a lost race,
    a rule of the domain) rolls everything back and is shown as a message, not a 500."""

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        try:
            return super().changeform_view(request, object_id, form_url, extra_context)
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())


@admin.register(Customer)
class CustomerAdmin(QuickCheckboxMixin, DomainRefusalAdmin):
    form = CustomerForm
    list_display = (
        "name", "email", "currency", "balance_display", "segment", "invoice_prefix",
    )
    list_filter = ("currency", "preferred_locale", "segment", "test_clock")
    search_fields = ("name", "email", "invoice_prefix")
    show_full_result_count = False
    list_rows_fast = True
    inlines = [BalanceTransactionInline]
    readonly_fields = ("balance_display", "previous_prefixes", "created_at")
    fieldsets = (
        (None, {"fields": ("name", "email")}),
        (_("Billing address"), {
            "fields": (
                "address_line1", "address_line2", ("postal_code", "city"), "state", "country",
            ),
        }),
        (_("Tax ids"), {"fields": ("tax_ids",)}),
        (_("Locale, time zone and currency"), {
            "fields": ("preferred_locale", "timezone", "currency"),
        }),
        (_("Segment and metadata"), {
            "fields": ("segment", "metadata"),
            "description": _("Used by automation filters."),
        }),
        (_("Invoice numbering"), {"fields": ("invoice_prefix", "previous_prefixes")}),
        (_("Balance"), {"fields": ("balance_display", "created_at")}),
        (_("Test clock"), {
            "fields": ("test_clock",),
            "description": _(
                "A customer on a test clock lives at the clock's time; it is chosen when the "
                "customer is created."
            ),
        }),
    )

    # --- columns and read-only fields ---

    @admin.display(description=_("balance"), ordering="balance")
    def balance_display(self, customer):
        return money(customer.balance, customer.currency)

    @admin.display(description=_("previous prefixes"))
    def previous_prefixes(self, customer):
        earlier = (
            InvoicePrefix.objects.filter(customer=customer)
            .exclude(prefix=customer.invoice_prefix)
            .order_by("reserved_at")
            .values_list("prefix", flat=True)
        )
        return ", ".join(earlier) or "-"

    # --- the form's shape follows the object ---

    def get_fieldsets(self, request, obj=None):
        if obj is not None:
            return self.fieldsets
        hidden = {"previous_prefixes", "balance_display", "created_at"}
        return [
            (title, {**options, "fields": [f for f in options["fields"] if f not in hidden]})
            for title, options in self.fieldsets
            if any(f not in hidden for f in options["fields"])
        ]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return ()
        return (*self.readonly_fields, "test_clock")

    def get_inlines(self, request, obj):
        return self.inlines if obj is not None else []

    # --- saving goes through the domain ---

    def save_model(self, request, obj, form, change):
        if change:
            self._save_changes(obj, form)
            return
        fields = {
            field.name: getattr(obj, field.name)
            for field in Customer._meta.concrete_fields
            if field.editable and not field.primary_key
        }
        created = customer_create(**fields)
        obj.pk, obj.invoice_prefix, obj.created_at = (
            created.pk, created.invoice_prefix, created.created_at,
        )
        obj._state.adding, obj._state.db = False, created._state.db
        if not form.cleaned_data.get("invoice_prefix"):
            self.message_user(
                request,
                _("Invoices of %(name)s will be numbered %(prefix)s-0001, %(prefix)s-0002...")
                % {"name": created.name, "prefix": created.invoice_prefix},
                messages.INFO,
            )

    def _save_changes(self, customer, form):
        # Only what the form edits: the balance is written by the ledger alone, and a save
        # of the whole row could put back a balance read before a concurrent adjustment.
        editable = [name for name in form.changed_data if name in form.fields]
        if not editable:
            return
        with transaction.atomic():
            customer.save(update_fields=editable)
            if "invoice_prefix" in editable:
                prefix_reserve(customer)

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        # A prefix another person took a moment ago is refused by DomainRefusalAdmin.
        extra_context = {**(extra_context or {}), **self.object_tools_context(request, object_id)}
        return super().changeform_view(request, object_id, form_url, extra_context)

    # --- "Adjust balance" ---

    def has_adjust_balance_permission(self, request) -> bool:
        return request.user.has_perm("customers.add_balancetransaction")

    def object_tools_context(self, request, object_id) -> dict:
        if object_id is None or not self.has_adjust_balance_permission(request):
            return {}
        url = reverse(
            f"{self.admin_site.name}:customers_customer_adjust_balance", args=[object_id]
        )
        return {"adjust_balance_url": url}

    def get_urls(self):
        adjust = path(
            "<path:object_id>/adjust-balance/",
            self.admin_site.admin_view(self.adjust_balance_view),
            name="customers_customer_adjust_balance",
        )
        return [adjust, *super().get_urls()]

    def adjust_balance_view(self, request, object_id):
        customer = self.get_object(request, unquote(object_id))
        if customer is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_adjust_balance_permission(request):
            raise PermissionDenied
        form = BalanceAdjustForm(request.POST or None, customer=customer)
        if request.method == "POST" and form.is_valid():
            try:
                entry = self.balance_adjust(request, customer, form)
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(
                    request,
                    _gettext("Balance adjusted by %(amount)s. New balance: %(balance)s.")
                    % {
                        "amount": money(entry.amount, entry.currency),
                        "balance": money(entry.ending_balance, entry.currency),
                    },
                    messages.SUCCESS,
                )
                return redirect(
                    f"{self.admin_site.name}:customers_customer_change", customer.pk
                )
        context = {
            **self.admin_site.each_context(request),
            "title": _gettext("Adjust the balance of %(name)s") % {"name": customer.name},
            "opts": self.opts,
            "original": customer,
            "form": style_form(form),
            "balance": money(customer.balance, customer.currency),
            "has_view_permission": self.has_view_permission(request, customer),
        }
        return TemplateResponse(request, "admin/customers/customer/adjust_balance.html", context)

    def balance_adjust(self, request, customer, form) -> BalanceTransaction:
        return balance_transaction_create(
            customer=customer,
            amount=form.signed_amount(),
            type=BalanceTransaction.Type.ADJUSTMENT,
            currency=customer.currency,
            now=now_for(customer),
            actor=Actor.staff(request.user),
            description=form.cleaned_data["description"],
        )


class ReadOnlyAdmin(ModelAdmin):
    """History is written by the domain only: staff read it here."""

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(BalanceTransaction)
class BalanceTransactionAdmin(MoneyColumnsMixin, ReadOnlyAdmin):
    """The ledger is append-only: it is read here and written by the domain only."""

    list_display = (
        "created_at", "customer", "type", "amount_display", "ending_balance_display",
        "description", "reference", "actor",
    )
    list_filter = ("type", "currency")
    search_fields = ("customer__name", "customer__email", "reference", "description")
    list_select_related = ("customer",)
    show_full_result_count = False
    fields = (
        "customer", "type", "amount_display", "ending_balance_display", "currency",
        "description", "reference", "actor", "created_at",
    )
    readonly_fields = fields


for _model, _admin in AUTH_ADMINS.items():
    if admin.site.is_registered(_model):
        admin.site.unregister(_model)
    admin.site.register(_model, _admin)
