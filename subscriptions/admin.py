"""The subscriptions admin: products with their prices inline, subscriptions with their
items inline, and the buttons staff use (cancel, pause, resume, reactivate, change with
the proration preview). Every button calls a domain function of services.py."""

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpResponseNotAllowed
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.translation import gettext_lazy as _

from customers.actors import Actor
from customers.admin import reader_locale
from customers.admin_base import ModelAdmin, TabularInline, style_form
from customers.clock import now_for, system_now
from customers.errors import DomainError
from customers.models import Customer, PaymentMethod
from customers.money import format_money
from invoices.admin.timeline import describes, timeline_rows
from invoices.models import Event

from .changes import subscription_change, subscription_preview_change
from .forms import CancelForm, ChangeForm, PauseForm, SubscriptionCreateForm
from .models import (
    Price,
    PriceCurrencyOption,
    Product,
    Subscription,
    SubscriptionInvoice,
    SubscriptionItem,
)
from .services import (
    subscription_cancel,
    subscription_create,
    subscription_pause_collection,
    subscription_reactivate,
    subscription_resume,
)
from .transitions import FINAL


class PriceInline(TabularInline):
    model = Price
    extra = 0
    fields = ("nickname", "currency", "unit_amount", "type", "recurring_interval",
              "recurring_interval_count", "tax_behavior", "active")
    show_change_link = True


@admin.register(Product)
class ProductAdmin(ModelAdmin):
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


class CurrencyOptionFormSet(BaseInlineFormSet):
    """A currency that live subscriptions bill in keeps its amount (removing it would
    leave them without one); each currency once."""

    def clean(self):
        super().clean()
        kept, removed = set(), set()
        for form in self.forms:
            currency = (form.cleaned_data or {}).get("currency")
            if not currency:
                continue
            if self.can_delete and self._should_delete_form(form):
                if form.instance.pk:
                    removed.add(form.instance.currency)
                continue
            if currency in kept:
                raise ValidationError(
                    _("%(c)s is given twice among the currency options.") % {"c": currency})
            kept.add(currency)
        for form in self.forms:  # an existing row moved to another currency
            if form.instance.pk and form.has_changed() and "currency" in form.changed_data:
                removed.add(form.initial.get("currency"))
        removed -= kept
        if self.instance.pk and removed:
            in_use = sorted(
                SubscriptionItem.objects.filter(price=self.instance,
                                                subscription__currency__in=removed)
                .exclude(subscription__status__in=FINAL)
                .values_list("subscription__currency", flat=True).distinct()
            )
            if in_use:
                raise ValidationError(
                    _("Subscriptions bill this price in %(c)s: its amount in it cannot be "
                      "removed.") % {"c": ", ".join(in_use)})


class CurrencyOptionInline(TabularInline):
    """Stripe's currency_options as rows: one currency and its amount a row."""

    model = PriceCurrencyOption
    formset = CurrencyOptionFormSet
    extra = 1
    fields = ("currency", "unit_amount")


@admin.register(Price)
class PriceAdmin(ModelAdmin):
    inlines = [CurrencyOptionInline]
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


class ItemInline(TabularInline):
    model = SubscriptionItem
    extra = 0
    fields = ("price", "quantity")
    readonly_fields = ("price", "quantity")
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class BilledPeriodInline(TabularInline):
    model = SubscriptionInvoice
    extra = 0
    fields = ("invoice", "billing_reason", "period_start", "period_end")
    readonly_fields = fields
    can_delete = False
    ordering = ("-period_start",)
    verbose_name_plural = _("invoices")

    def has_add_permission(self, request, obj=None):
        return False


SUBSCRIPTION_EVENT_TITLES = {
    "customer.subscription.created": _("Subscription created"),
    "customer.subscription.updated": _("Subscription updated"),
    "customer.subscription.deleted": _("Subscription ended"),
    "customer.subscription.paused": _("Subscription paused"),
    "customer.subscription.resumed": _("Subscription resumed"),
    "customer.subscription.trial_will_end": _("Trial ends in 3 days"),
    "invoice.upcoming": _("Upcoming renewal announced"),
}
for _type, _title in SUBSCRIPTION_EVENT_TITLES.items():  # the timelines name them
    describes(_type)(lambda event, currency, title=_title: str(title))


class IntervalFilter(admin.SimpleListFilter):
    title = _("billing interval")
    parameter_name = "interval"

    def lookups(self, request, model_admin):
        return Price.Interval.choices

    def queryset(self, request, queryset):
        if self.value() in Price.Interval.values:
            return queryset.filter(items__price__recurring_interval=self.value()).distinct()
        return queryset


class ProductFilter(admin.SimpleListFilter):
    title = _("product")
    parameter_name = "product"

    def lookups(self, request, model_admin):
        return list(Product.objects.values_list("pk", "name")[:100])

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(items__price__product_id=self.value()).distinct()
        return queryset


class SegmentFilter(admin.SimpleListFilter):
    title = _("segment")
    parameter_name = "segment"

    def lookups(self, request, model_admin):
        segments = (
            Customer.objects.exclude(segment="").values_list("segment", flat=True)
            .distinct().order_by("segment")[:100]
        )
        return [(segment, segment) for segment in segments]

    def queryset(self, request, queryset):
        if self.value():
            return queryset.filter(customer__segment=self.value())
        return queryset


def may_change(request) -> bool:
    return request.user.has_perm("subscriptions.change_subscription")


def staff_actor(request) -> Actor:
    return Actor.staff(request.user)


@admin.register(Subscription)
class SubscriptionAdmin(ModelAdmin):
    list_display = ("__str__", "customer", "status", "plan", "current_period_end",
                    "cancel_at_period_end", "created_at")
    list_filter = ("status", IntervalFilter, "currency", ProductFilter, SegmentFilter,
                   "collection_method", "cancel_at_period_end")
    list_select_related = ("customer",)
    search_fields = ("=id", "customer__name", "customer__email", "customer__invoice_prefix",
                     "items__price__product__name")
    readonly_fields = (
        "customer", "status", "currency", "billing_cycle_anchor", "current_period_start",
        "current_period_end", "trial_start", "trial_end", "cancel_at_period_end", "cancel_at",
        "canceled_at", "ended_at", "cancellation_reason", "cancellation_feedback",
        "cancellation_comment", "pause_collection", "pause_resumes_at", "latest_invoice",
        "created_at",
    )
    fieldsets = (
        (None, {"fields": ("customer", "status", "currency", "collection_method",
                           "days_until_due", "default_payment_method", "metadata")}),
        (_("Periods"), {"fields": ("billing_cycle_anchor", "current_period_start",
                                   "current_period_end", "trial_start", "trial_end",
                                   "latest_invoice", "created_at")}),
        (_("Cancellation and pause"), {"fields": (
            "cancel_at_period_end", "cancel_at", "canceled_at", "ended_at",
            "cancellation_reason", "cancellation_feedback", "cancellation_comment",
            "pause_collection", "pause_resumes_at")}),
    )
    inlines = [ItemInline, BilledPeriodInline]
    change_form_template = "admin/subscriptions/subscription/change_form.html"
    change_list_template = "admin/subscriptions/subscription/change_list.html"

    @admin.display(description=_("plan"))
    def plan(self, subscription):
        return ", ".join(
            f"{item.quantity} × {item.price}" for item in subscription.items.all()
        )

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("items__price__product")

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if db_field.name == "default_payment_method":
            object_id = request.resolver_match.kwargs.get("object_id")
            subscription = Subscription.objects.filter(pk=object_id).first() if object_id else None
            kwargs["queryset"] = PaymentMethod.objects.filter(
                customer_id=subscription.customer_id if subscription else None
            )
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def has_delete_permission(self, request, obj=None):
        return False  # subscriptions are canceled, never deleted

    def has_add_permission(self, request):
        # Created through "New subscription" (subscription_create), never the model form:
        # no theme "+" leading to a form that cannot make one.
        return False

    # --- buttons ---

    def change_view(self, request, object_id, form_url="", extra_context=None):
        subscription = self.get_object(request, unquote(object_id))
        if subscription is not None:
            extra_context = {
                **(extra_context or {}),
                "subscription_buttons": self._buttons(request, subscription),
                "timeline": timeline(subscription),
            }
        return super().change_view(request, object_id, form_url, extra_context)

    def _buttons(self, request, subscription) -> dict:
        """As on the invoice page: the usual action as a button, the others in a menu."""
        if not may_change(request) or subscription.status in FINAL:
            return {"primary": [], "menu": []}
        url = self._url
        primary = [{"label": _("Change plan"), "url": url("change_plan", subscription)}]
        menu = []
        if subscription.cancel_at_period_end:
            primary.append({"label": _("Reactivate"), "url": url("reactivate", subscription),
                            "post": True})
        if subscription.status == Subscription.Status.PAUSED:
            primary.append({"label": _("Resume"), "url": url("resume", subscription),
                            "post": True})
        elif subscription.status != Subscription.Status.INCOMPLETE:
            menu.append({"label": _("Pause collection"), "url": url("pause", subscription)})
        menu.append({"label": _("Cancel subscription"), "url": url("cancel", subscription),
                     "danger": True})
        return {"primary": primary, "menu": menu}

    def _url(self, name, subscription) -> str:
        return reverse(f"admin:subscriptions_subscription_{name}", args=[subscription.pk])

    def get_urls(self):
        wrap = self.admin_site.admin_view
        views = {"cancel": self.cancel_view, "pause": self.pause_view,
                 "resume": self.resume_view, "reactivate": self.reactivate_view,
                 "change_plan": self.change_plan_view}
        urls = [
            path(f"<path:object_id>/{name.replace('_', '-')}/", wrap(view),
                 name=f"subscriptions_subscription_{name}")
            for name, view in views.items()
        ]
        urls.append(path("new/", wrap(self.create_view),
                         name="subscriptions_subscription_create"))
        return urls + super().get_urls()

    def _subscription(self, request, object_id):
        if not may_change(request):
            raise PermissionDenied
        subscription = self.get_object(request, unquote(object_id))
        if subscription is None:
            raise Http404
        return subscription

    def _done(self, request, subscription, message):
        self.message_user(request, message, messages.SUCCESS)
        return redirect(reverse("admin:subscriptions_subscription_change",
                                args=[subscription.pk]))

    def _page(self, request, subscription, form, title, submit, **context):
        style_form(form)
        return TemplateResponse(request, "admin/subscriptions/subscription/form.html", {
            **self.admin_site.each_context(request), "opts": self.opts,
            "original": subscription, "form": form, "title": title,
            "submit_label": submit, "media": self.media + form.media, **context,
        })

    def cancel_view(self, request, object_id):
        subscription = self._subscription(request, object_id)
        form = CancelForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                subscription_cancel(
                    subscription, now=now_for(subscription.customer),
                    actor=staff_actor(request), at_period_end=data["when"] == "period_end",
                    prorate=data["prorate"], reason=data["reason"], feedback=data["feedback"],
                    comment=data["comment"],
                )
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                return self._done(request, subscription, _("Subscription canceled.")
                                  if subscription.status == Subscription.Status.CANCELED
                                  else _("The subscription will cancel at the end of its "
                                         "period."))
        return self._page(request, subscription, form, _("Cancel %(s)s") % {"s": subscription},
                          _("Cancel subscription"))

    def pause_view(self, request, object_id):
        subscription = self._subscription(request, object_id)
        form = PauseForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                subscription_pause_collection(
                    subscription, now=now_for(subscription.customer),
                    actor=staff_actor(request), behavior=form.cleaned_data["behavior"],
                    resumes_at=form.cleaned_data["resumes_at"],
                )
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                return self._done(request, subscription, _("Collection paused."))
        return self._page(request, subscription, form, _("Pause %(s)s") % {"s": subscription},
                          _("Pause collection"))

    def _post_only(self, request, object_id, function, message):
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        subscription = self._subscription(request, object_id)
        try:
            function(subscription, now=now_for(subscription.customer),
                     actor=staff_actor(request))
        except DomainError as error:
            self.message_user(request, error.message, messages.ERROR)
            return redirect(reverse("admin:subscriptions_subscription_change",
                                    args=[subscription.pk]))
        return self._done(request, subscription, message)

    def resume_view(self, request, object_id):
        return self._post_only(request, object_id, subscription_resume,
                               _("Subscription resumed."))

    def reactivate_view(self, request, object_id):
        return self._post_only(request, object_id, subscription_reactivate,
                               _("Subscription reactivated: it will renew."))

    def change_plan_view(self, request, object_id):
        """Preview first (the upcoming invoice); apply with the second button."""
        subscription = self._subscription(request, object_id)
        form = ChangeForm(request.POST or None, subscription=subscription)
        preview = None
        if request.method == "POST" and form.is_valid():
            now = now_for(subscription.customer)
            behavior = form.cleaned_data["proration_behavior"]
            try:
                items = form.items(subscription)
                if "apply" in request.POST:
                    subscription_change(subscription, items=items, now=now,
                                        actor=staff_actor(request),
                                        proration_behavior=behavior)
                    return self._done(request, subscription, _("Subscription changed."))
                preview = subscription_preview_change(subscription, items=items, now=now,
                                                      proration_behavior=behavior)
            except DomainError as error:
                form.add_error(None, error.message)
        return self._page(
            request, subscription, form, _("Change %(s)s") % {"s": subscription},
            _("Preview"), preview=preview and preview_rows(preview),
        )

    def create_view(self, request):
        if not request.user.has_perm("subscriptions.add_subscription"):
            raise PermissionDenied
        form = SubscriptionCreateForm(request.POST or None,
                                      initial={"customer": request.GET.get("customer")})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                subscription = subscription_create(
                    customer=data["customer"], items=[(data["price"], data["quantity"])],
                    now=now_for(data["customer"]), actor=staff_actor(request),
                    trial_period_days=data["trial_period_days"],
                    collection_method=data["collection_method"],
                    days_until_due=data["days_until_due"],
                )
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                return self._done(request, subscription, _("Subscription created."))
        return self._page(request, None, form, _("New subscription"),
                          _("Create subscription"))


def preview_rows(preview) -> dict:
    currency = preview.subscription.currency
    locale = reader_locale()

    def fmt(amount):
        return format_money(amount, currency, locale)

    def rows(lines, seconds=True):
        shape = "%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d"
        return [{"description": line.description, "amount": fmt(line.amount),
                 "period": f"{line.start:{shape}} – {line.end:{shape}}",
                 "proration": line.proration} for line in lines]

    return {
        "proration_lines": rows(preview.proration_lines),
        "invoice_now_lines": rows(preview.invoice_now_lines),
        "upcoming_lines": rows(preview.next_invoice_lines),
        "invoice_now": fmt(preview.invoice_now_amount),
        "invoice_now_negative": preview.invoice_now_amount < 0,
        "next_invoice": fmt(preview.next_invoice_amount),
        "next_invoice_at": preview.next_invoice_at, "behavior": preview.behavior,
        "resets_cycle": preview.resets_cycle,
    }


def timeline(subscription) -> list[dict]:
    """The subscription's events, newest first, in plain words (the invoice timeline's
    rows), each with its invoice when it has one and the attributes it changed."""
    events = (
        Event.objects.filter(subscription_id=subscription.pk)
        .select_related("invoice").order_by("-created_at", "-id")[:200]
    )
    rows = timeline_rows(events, subscription.currency)
    for row in rows:
        event = row["event"]
        previous = (event.data or {}).get("previous_attributes") or {}
        changes = [f"{name}: {previous[name]} → {event.data.get(name)}" for name in previous]
        if changes:
            row["sentence"] = "; ".join([row["sentence"], *changes])
        if event.invoice_id:
            row["link"] = reverse("admin:invoices_invoice_change", args=[event.invoice_id])
            row["link_text"] = str(event.invoice)
    return rows


def subscription_rows(customer_id) -> list[dict]:
    subscriptions = (
        Subscription.objects.filter(customer_id=customer_id)
        .prefetch_related("items__price__product").order_by("-created_at", "-id")[:50]
    )
    return [
        {
            "label": str(subscription),
            "url": reverse("admin:subscriptions_subscription_change", args=[subscription.pk]),
            "status": subscription.get_status_display(),
            "plan": ", ".join(f"{item.quantity} × {item.price}" for item in
                              subscription.items.all()),
            "period_end": subscription.current_period_end,
            "cancels": subscription.cancel_at_period_end,
        }
        for subscription in subscriptions
    ]


# The customer page is extended by whatever admin is registered (customers, invoices).
_CustomerAdmin = type(admin.site.get_model_admin(Customer))


class CustomerWithSubscriptionsAdmin(_CustomerAdmin):
    """Lists the customer's subscriptions (a table, not an inline: the customer form
    posts no extra formset)."""

    change_form_template = "admin/subscriptions/customer_change_form.html"

    def change_view(self, request, object_id, form_url="", extra_context=None):
        customer_id = unquote(object_id)
        allowed = request.user.has_perm("subscriptions.view_subscription")
        extra_context = {
            **(extra_context or {}),
            "can_see_subscriptions": allowed,
            "customer_subscriptions": lambda: subscription_rows(customer_id) if allowed else [],
            "new_subscription_url": (
                reverse("admin:subscriptions_subscription_create") + f"?customer={customer_id}"
                if request.user.has_perm("subscriptions.add_subscription") else ""
            ),
        }
        return super().change_view(request, object_id, form_url, extra_context)


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerWithSubscriptionsAdmin)
