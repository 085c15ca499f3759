"""Test clocks in the admin: staff create one, attach customers, and advance it to
rehearse what the system would do to those customers over time."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext as _gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from customers.admin_base import ModelAdmin, style_form
from customers.errors import DomainError
from customers.models import TestClock

from .clocks import clock_advance

QUICK_STEPS_DAYS = (1, 7, 30)


def local_time(moment) -> str:
    return date_format(timezone.localtime(moment), "DATETIME_FORMAT")


class ClockAdvanceForm(forms.Form):
    to = forms.DateTimeField(
        label=_("New time"),
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    # Set by the "+1 day", "+7 days", "+30 days" buttons instead of typing a time.
    quick = forms.TypedChoiceField(
        choices=[(str(days), str(days)) for days in QUICK_STEPS_DAYS],
        coerce=int,
        required=False,
        empty_value=None,
        widget=forms.HiddenInput,
    )

    def __init__(self, *args, clock: TestClock, **kwargs):
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.fields["to"].help_text = _(
            "In %(zone)s; after the clock's current time, %(time)s."
        ) % {
            "zone": timezone.get_current_timezone_name(),
            "time": local_time(clock.frozen_time),
        }

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        if cleaned.get("quick"):
            cleaned["to"] = self.clock.frozen_time + timedelta(days=cleaned["quick"])
        to = cleaned.get("to")
        if to is None:
            raise ValidationError(_("Enter the new time, or use one of the quick steps."))
        if to <= self.clock.frozen_time:
            raise ValidationError(
                _("A test clock only moves forward: choose a time after %(time)s."),
                params={"time": local_time(self.clock.frozen_time)},
            )
        return cleaned


def advance_summary(result: dict) -> str:
    """One sentence per kind of work that ran; later kinds fall back to their counts."""
    parts = []
    for work, counts in result.items():
        if work == "stops":
            continue
        describe = SUMMARIES.get(work)
        if describe is not None:
            parts.extend(describe(counts))
        elif any(counts.values()):  # a kind without its own sentence: its counts
            parts.append(f"{work}: {counts}")
    return ", ".join(part for part in parts if part) or _gettext("nothing was due")


def auto_finalization_summary(counts: dict) -> list[str]:
    finalized, failed = counts.get("finalized", 0), counts.get("failed", 0)
    parts = [
        ngettext("%(n)d draft finalized", "%(n)d drafts finalized", finalized) % {"n": finalized}
    ] if finalized else []
    if failed:
        parts.append(
            ngettext(
                "%(n)d draft could not be finalized (see its timeline)",
                "%(n)d drafts could not be finalized (see their timelines)",
                failed,
            ) % {"n": failed}
        )
    return parts


def collection_summary(counts: dict) -> list[str]:
    phrases = {
        "succeeded": lambda n: ngettext("%(n)d payment taken", "%(n)d payments taken", n),
        "failed": lambda n: ngettext("%(n)d payment declined", "%(n)d payments declined", n),
        "processing": lambda n: ngettext(
            "%(n)d payment processing", "%(n)d payments processing", n),
        "requires_action": lambda n: ngettext(
            "%(n)d payment waiting for the customer", "%(n)d payments waiting for the customer",
            n),
        "held": lambda n: ngettext(
            "%(n)d invoice without a payment method", "%(n)d invoices without a payment method",
            n),
        "unknown": lambda n: ngettext(
            "%(n)d payment with no answer from the gateway yet",
            "%(n)d payments with no answer from the gateway yet", n),
    }
    return [phrase(counts[key]) % {"n": counts[key]}
            for key, phrase in phrases.items() if counts.get(key)]


def uncollectible_summary(counts: dict) -> list[str]:
    n = counts.get("uncollectible", 0)
    return [ngettext("%(n)d invoice marked uncollectible", "%(n)d invoices marked uncollectible",
                     n) % {"n": n}] if n else []


def reminders_summary(counts: dict) -> list[str]:
    n = counts.get("queued", 0)
    return [ngettext("%(n)d reminder queued", "%(n)d reminders queued", n) % {"n": n}] if n else []


def alerts_summary(counts: dict) -> list[str]:
    n = counts.get("queued", 0)
    return [ngettext("%(n)d overdue alert queued", "%(n)d overdue alerts queued", n)
            % {"n": n}] if n else []


def emails_summary(counts: dict) -> list[str]:
    sent, failed = counts.get("sent", 0), counts.get("failed", 0)
    parts = [ngettext("%(n)d email sent", "%(n)d emails sent", sent) % {"n": sent}] if sent else []
    if failed:
        parts.append(ngettext(
            "%(n)d email could not be sent (see the outbox)",
            "%(n)d emails could not be sent (see the outbox)", failed,
        ) % {"n": failed})
    return parts


def automations_summary(counts: dict) -> list[str]:
    started, steps = counts.get("started", 0), counts.get("steps", 0)
    parts = []
    if started:
        parts.append(_gettext("automation runs started: %(n)d") % {"n": started})
    if steps:
        parts.append(_gettext("automation steps applied: %(n)d") % {"n": steps})
    return parts


def subscriptions_summary(counts: dict) -> list[str]:
    phrases = {
        "renewed": lambda n: ngettext("%(n)d subscription renewed",
                                      "%(n)d subscriptions renewed", n),
        "canceled": lambda n: ngettext("%(n)d subscription canceled at period end",
                                       "%(n)d subscriptions canceled at period end", n),
        "incomplete_expired": lambda n: ngettext("%(n)d incomplete subscription expired",
                                                 "%(n)d incomplete subscriptions expired", n),
        "notices": lambda n: ngettext("%(n)d renewal or trial notice",
                                      "%(n)d renewal or trial notices", n),
        "resumed": lambda n: ngettext("%(n)d paused subscription resumed",
                                      "%(n)d paused subscriptions resumed", n),
    }
    return [phrase(counts[name]) % {"n": counts[name]}
            for name, phrase in phrases.items() if counts.get(name)]


SUMMARIES = {
    "automations": automations_summary,
    "subscriptions": subscriptions_summary,
    "auto_finalization": auto_finalization_summary,
    "collection": collection_summary,
    "uncollectible": uncollectible_summary,
    "reminders": reminders_summary,
    "overdue_alerts": alerts_summary,
    "emails": emails_summary,
}


@admin.register(TestClock)
class TestClockAdmin(ModelAdmin):
    list_display = ("name", "frozen_time", "customers_count", "created_at")
    search_fields = ("name",)
    readonly_fields = ("customers_link", "created_at")
    change_form_template = "admin/automations/testclock/change_form.html"

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(customers_total=Count("customers"))

    @admin.display(description=_("customers"), ordering="customers_total")
    def customers_count(self, clock):
        return clock.customers_total

    @admin.display(description=_("customers"))
    def customers_link(self, clock):
        url = reverse("admin:customers_customer_changelist")
        return format_html(
            '<a href="{}?test_clock__id__exact={}">{}</a>',
            url, clock.pk,
            ngettext("%(n)d customer", "%(n)d customers", clock.customers_total)
            % {"n": clock.customers_total},
        )

    def get_fields(self, request, obj=None):
        if obj is None:
            return ("name", "frozen_time")
        return ("name", "frozen_time", "customers_link", "created_at")

    def get_readonly_fields(self, request, obj=None):
        # Once created, the time only moves through "Advance", which runs the due work.
        return () if obj is None else ("frozen_time", *self.readonly_fields)

    # --- "Advance" ---

    def has_advance_permission(self, request, obj=None) -> bool:
        return self.has_change_permission(request, obj)

    def get_urls(self):
        advance = path(
            "<path:object_id>/advance/",
            self.admin_site.admin_view(self.advance_view),
            name="automations_testclock_advance",
        )
        return [advance, *super().get_urls()]

    def change_view(self, request, object_id, form_url="", extra_context=None):
        extra_context = {**(extra_context or {})}
        if self.has_advance_permission(request):
            extra_context["advance_url"] = reverse(
                f"{self.admin_site.name}:automations_testclock_advance", args=[object_id]
            )
        return super().change_view(request, object_id, form_url, extra_context)

    def advance_view(self, request, object_id):
        clock = self.get_object(request, unquote(object_id))
        if clock is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        if not self.has_advance_permission(request, clock):
            raise PermissionDenied
        form = ClockAdvanceForm(request.POST or None, clock=clock)
        if request.method == "POST" and form.is_valid():
            try:
                result = clock_advance(clock, to=form.cleaned_data["to"])
            except DomainError as error:
                form.add_error(None, error.message)
            else:
                self.message_user(request, self.advance_message(clock, result), messages.SUCCESS)
                return redirect(f"{self.admin_site.name}:customers_testclock_change", clock.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": _gettext("Advance %(name)s") % {"name": clock.name},
            "opts": self.opts,
            "original": clock,
            "form": style_form(form),
            "quick_steps": QUICK_STEPS_DAYS,
            "frozen_time": timezone.localtime(clock.frozen_time),
            "has_view_permission": self.has_view_permission(request, clock),
        }
        return TemplateResponse(request, "admin/automations/testclock/advance.html", context)

    def advance_message(self, clock, result: dict) -> str:
        return _gettext("%(name)s moved to %(time)s: %(summary)s.") % {
            "name": clock.name,
            "time": local_time(clock.frozen_time),
            "summary": advance_summary(result),
        }

from . import settings_admin  # noqa: E402,F401 - registers the billing settings screens
from .engine import admin as engine_admin  # noqa: E402,F401  (registers the automations' screens)
from .notifications import admin as notifications_admin  # noqa: E402,F401  (registers its screens)


def beat_admins_in_theme() -> None:
    """django-celery-beat's screens (the periodic tasks automations.schedule declares),
    re-registered on the project's base class so that they are not half-styled."""
    from django_celery_beat import admin as beat

    for model, base in list(admin.site._registry.items()):
        if type(base).__module__ != beat.__name__ or isinstance(base, ModelAdmin):
            continue
        themed = type(type(base).__name__, (type(base), ModelAdmin), {})
        admin.site.unregister(model)
        admin.site.register(model, themed)


beat_admins_in_theme()
