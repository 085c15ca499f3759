"""Notifications in the admin: settings, editable email templates with a preview, the
outbox (visible, re-sendable), and the customer's reminder opt-out on the customer page."""

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from customers.admin import SingletonAdmin
from customers.admin_base import ModelAdmin, StackedInline
from customers.clock import system_now
from customers.fields import AmountsByCurrencyField, CommaListField
from customers.models import Customer
from invoices.admin.timeline import describes

from .delivery import Undeliverable, outbox_requeue, row_render
from .kinds import KINDS, sample_context
from .models import (
    CustomerNotificationPreference,
    EmailTemplate,
    NotificationSettings,
    OutboxMessage,
)
from .outbox import delivery_wake
from .rendering import LOCALES, TemplateError, default_sources, email_render

RESCHEDULE_FIELDS = {"reminder_offsets", "overdue_alert_days"}


def preview_html(rendered) -> str:
    return format_html(
        '<p><strong>{}</strong> {}</p>'
        '<iframe sandbox="" srcdoc="{}" style="width:100%;max-width:760px;height:520px;'
        'border:1px solid #ccc;background:#fff"></iframe>'
        '<pre style="white-space:pre-wrap;max-width:760px">{}</pre>',
        _gettext("Subject:"), rendered.subject, rendered.html, rendered.text,
    )


def error_html(message: str) -> str:
    return format_html('<p class="errornote">{}</p>', message)


class NotificationSettingsForm(forms.ModelForm):
    reminder_offsets = CommaListField(
        item=int, label=_("Reminder offsets (days)"),
        help_text=_("Days relative to the due date (-60 to 120), separated by commas: -7 is a "
                    "week before, 0 the due date, 3 three days after. Empty sends no reminders."),
    )
    overdue_alert_thresholds = AmountsByCurrencyField(
        label=_("Overdue alert thresholds"),
        help_text=_("Per currency, in its own units: EUR 1000.00 alerts on EUR invoices with at "
                    "least 1,000.00 € remaining. Currencies not listed raise no alert."),
    )

    class Meta:
        model = NotificationSettings
        fields = [
            "send_finalized_invoices", "from_email", "reminder_offsets",
            "overdue_alert_thresholds", "overdue_alert_days", "alert_recipients",
            "digest_enabled", "digest_recipients", "digest_hour", "staff_locale",
        ]


@admin.register(NotificationSettings)
class NotificationSettingsAdmin(SingletonAdmin):
    """A single row: the changelist opens it directly."""

    form = NotificationSettingsForm

    fieldsets = (
        (_("Customer emails"), {"fields": ("send_finalized_invoices", "from_email")}),
        (_("Reminders"), {"fields": ("reminder_offsets",)}),
        (_("Overdue alerts"), {
            "fields": ("overdue_alert_thresholds", "overdue_alert_days", "alert_recipients"),
        }),
        (_("Daily digest"), {"fields": ("digest_enabled", "digest_recipients", "digest_hour")}),
        (_("Staff emails"), {"fields": ("staff_locale",)}),
        (_("Subscriptions"), {"fields": ("upcoming_renewal_days",
                                         "upcoming_renewal_all_intervals",
                                         "cancellation_survey_url")}),
    )

    def save_model(self, request, obj, form, change):
        super().save_model(request, obj, form, change)
        if RESCHEDULE_FIELDS & set(form.changed_data):
            transaction.on_commit(schedules_rebuild_later, robust=True)
            self.message_user(
                request,
                _("Open invoices are being rescheduled for the new reminder and alert timing."),
                messages.INFO,
            )


def schedules_rebuild_later() -> None:
    from .tasks import schedules_rebuild_task

    schedules_rebuild_task.delay()


@admin.register(EmailTemplate)
class EmailTemplateAdmin(ModelAdmin):
    list_display = ("kind", "locale", "subject", "updated_at")
    list_filter = ("kind", "locale")
    readonly_fields = ("variables", "preview")

    def get_fields(self, request, obj=None):
        fields = ["kind", "locale", "variables", "subject", "text_body", "html_body"]
        return fields + ["preview"] if obj is not None else fields

    def get_readonly_fields(self, request, obj=None):
        # The kind and language say which email this replaces: fixed once saved.
        return ("kind", "locale", *self.readonly_fields) if obj else self.readonly_fields

    def get_changeform_initial_data(self, request):
        """"Add" with ?kind=...&locale=... starts from the built-in text to edit."""
        initial = super().get_changeform_initial_data(request)
        kind, locale = initial.get("kind"), initial.get("locale")
        if kind in KINDS and locale in LOCALES:
            sources = default_sources(kind, locale)
            initial.update(
                subject=sources["subject"].strip(), text_body=sources["text"],
                html_body=sources["html"],
            )
        return initial

    @admin.display(description=_("variables"))
    def variables(self, obj):
        if obj is None or not obj.kind:
            return _("Choose the email, save, and its variables are listed here.")
        names = KINDS[obj.kind].variables
        return format_html_join(", ", "<code>{{{{ {} }}}}</code>", ((n,) for n in names))

    @admin.display(description=_("preview with sample values"))
    def preview(self, obj):
        try:
            rendered = email_render(
                obj.kind, obj.locale, sample_context(obj.kind), {(obj.kind, obj.locale): obj}
            )
        except TemplateError as error:
            return error_html(str(error))
        return preview_html(rendered)


@admin.register(OutboxMessage)
class OutboxMessageAdmin(ModelAdmin):
    list_display = (
        "created_at", "kind", "recipients", "customer", "invoice", "status", "attempts",
        "sent_at", "error_short",
    )
    list_filter = ("status", "kind")
    list_select_related = ("customer", "invoice")
    search_fields = ("key", "invoice__number", "customer__name", "customer__email")
    show_full_result_count = False
    actions = ["resend"]
    fields = (
        "key", "kind", "status", "customer", "invoice", "to", "locale", "subject",
        "message_id", "attempts", "next_attempt_at", "last_error", "send_count", "created_at",
        "sent_at", "context", "attachments", "preview",
    )
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=_("to"))
    def recipients(self, row):
        if row.to:
            return ", ".join(row.to)
        return row.customer.email if row.customer else ""

    @admin.display(description=_("error"))
    def error_short(self, row):
        error = row.last_error
        return error if len(error) <= 80 else error[:79] + "…"

    @admin.display(description=_("content (as it would be sent now)"))
    def preview(self, row):
        try:
            rendered = row_render(row, notification_settings=NotificationSettings.load())
        except Undeliverable as error:
            return error_html(str(error))
        return preview_html(rendered)

    @admin.action(description=_("Re-send the selected emails"), permissions=["change"])
    def resend(self, request, queryset):
        count = outbox_requeue(list(queryset), now=system_now())
        if count:
            transaction.on_commit(delivery_wake, robust=True)
        self.message_user(
            request,
            ngettext("%(n)d email will be sent again.", "%(n)d emails will be sent again.", count)
            % {"n": count},
            messages.SUCCESS,
        )
        skipped = queryset.count() - count
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "%(n)d email was not re-sent: it is still waiting to be sent.",
                    "%(n)d emails were not re-sent: they are still waiting to be sent.",
                    skipped,
                ) % {"n": skipped},
                messages.WARNING,
            )


class CustomerNotificationPreferenceInline(StackedInline):
    model = CustomerNotificationPreference
    fields = ("reminders_paused", "reason")
    can_delete = False
    max_num = 1
    verbose_name_plural = _("Reminders")


# The customer page is the customers app's (extended by invoices); automations adds its
# inline by extending whatever admin is registered, so no lower app imports this one.
_CustomerAdmin = type(admin.site.get_model_admin(Customer))


class CustomerWithNotificationsAdmin(_CustomerAdmin):
    inlines = [*_CustomerAdmin.inlines, CustomerNotificationPreferenceInline]


admin.site.unregister(Customer)
admin.site.register(Customer, CustomerWithNotificationsAdmin)


# --- the timelines' sentences for the emails this app sends ------------------------------


def reminder_timing(key: str) -> str:
    """ "reminder:17:-3" -> "3 days before due"."""
    parts = key.split(":")
    if parts[0] != "reminder" or len(parts) != 3:
        return ""
    try:
        offset = int(parts[2])
    except ValueError:
        return ""
    if offset == 0:
        return _gettext("on the due date")
    days = abs(offset)
    if offset < 0:
        return ngettext("%(n)d day before due", "%(n)d days before due", days) % {"n": days}
    return ngettext("%(n)d day after due", "%(n)d days after due", days) % {"n": days}


@describes("email.sent", "email.failed")
def email_sentence(event, currency) -> str:
    data = event.data or {}
    kind = KINDS.get(data.get("email", ""))
    name = str(kind.label) if kind else data.get("email", "")
    if event.type == "email.failed":
        return _gettext("“%(email)s” email could not be sent: %(error)s") % {
            "email": name, "error": data.get("error", "")}
    text = _gettext("“%(email)s” email sent to %(to)s") % {
        "email": name, "to": ", ".join(data.get("to") or []) or "—"}
    timing = reminder_timing(data.get("key", ""))
    return f"{text} ({timing})" if timing else text
