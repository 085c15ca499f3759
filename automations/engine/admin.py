"""The automations in the admin: stock, declarative ModelAdmins (an inline of steps, a
form whose trigger and step kinds come from the registries), the one-sentence summary,
the run history, the recipes page and the dry run. Actions call the domain functions."""

import json

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, Q
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _gettext
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from customers.actors import Actor
from customers.admin_base import ModelAdmin, StackedInline, input_classes
from customers.clock import system_now
from customers.errors import DomainError
from invoices.admin.timeline import describes

from .admin_forms import AutomationForm, StepForm, step_fieldsets
from .dryrun import MAX_DAYS, dry_run
from .models import Automation, AutomationRun, AutomationStep
from .recipes import RECIPES, recipe_install
from .runs import run_cancel
from .services import (
    automation_publish,
    automation_set_enabled,
    plan_build,
    plan_of,
    plan_summary,
    plan_validate,
)

R = AutomationRun.Status
OUTCOMES = [R.WAITING, R.COMPLETED, R.EXITED, R.FAILED, R.CANCELED]


class StepFormSet(forms.BaseInlineFormSet):
    """Checks the whole automation (trigger, conditions and steps together) before
    anything is saved: the admin builds this formset on the form's cleaned instance."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        steps = sorted(
            (
                form.cleaned_data
                for form in self.forms
                if form.cleaned_data and not form.cleaned_data.get("DELETE")
            ),
            key=lambda data: data.get("position") or 0,
        )
        automation = self.instance
        plan = plan_build(
            trigger=automation.trigger,
            days=automation.days,
            conditions=automation.conditions,
            steps=steps,
        )
        errors = plan_validate(plan)
        if errors:
            raise ValidationError(errors)


class StepInline(StackedInline):
    """Each step's parameters as the inputs of its kind (admin_forms.py); the page shows
    the chosen kind's only (the others stay empty and are not read)."""

    model = AutomationStep
    form = StepForm
    formset = StepFormSet
    extra = 1

    def get_fieldsets(self, request, obj=None):
        return step_fieldsets()


@admin.register(Automation)
class AutomationAdmin(ModelAdmin):
    form = AutomationForm
    inlines = [StepInline]
    list_display = (
        "name",
        "enabled",
        "summary",
        "priority",
        "waiting",
        "completed",
        "exited",
        "failed",
    )
    list_filter = ("enabled", "trigger")
    search_fields = ("name",)
    readonly_fields = ("summary", "version_number", "run_history")
    actions = ["enable", "disable"]
    change_form_template = "admin/automations/automation/change_form.html"
    change_list_template = "admin/automations/automation/change_list.html"
    fieldsets = (
        (None, {"fields": ("name", "enabled", "priority", "summary")}),
        (pgettext_lazy("automation", "When"), {"fields": ("trigger", "days")}),
        (
            pgettext_lazy("automation", "Conditions"),
            {"fields": ("conditions_group", "condition_rows", "conditions")},
        ),
        (pgettext_lazy("automation", "Runs"), {"fields": ("version_number", "run_history")}),
    )

    def get_queryset(self, request):
        counts = {status: Count("runs", filter=Q(runs__status=status)) for status in OUTCOMES}
        return (
            super()
            .get_queryset(request)
            .select_related("live_version")
            .annotate(**{f"runs_{status}": count for status, count in counts.items()})
        )

    @admin.display(description=pgettext_lazy("automation", "summary"))
    def summary(self, automation):
        if automation.pk is None:
            return "-"
        return plan_summary(
            automation.live_version.plan if automation.live_version else plan_of(automation)
        )

    @admin.display(description=pgettext_lazy("automation", "version"))
    def version_number(self, automation):
        return automation.live_version.number if automation.live_version else "-"

    @admin.display(description=pgettext_lazy("automation", "waiting"), ordering="runs_waiting")
    def waiting(self, automation):
        return automation.runs_waiting

    @admin.display(description=pgettext_lazy("automation", "completed"), ordering="runs_completed")
    def completed(self, automation):
        return automation.runs_completed

    @admin.display(description=pgettext_lazy("automation", "exited"), ordering="runs_exited")
    def exited(self, automation):
        return automation.runs_exited

    @admin.display(description=pgettext_lazy("automation", "stopped"), ordering="runs_failed")
    def failed(self, automation):
        return automation.runs_failed

    @admin.display(description=_("run history"))
    def run_history(self, automation):
        if automation.pk is None:
            return "-"
        counts = dict(automation.runs.order_by().values_list("status").annotate(n=Count("pk")))
        url = reverse("admin:automations_automationrun_changelist")
        totals = format_html_join(
            " · ",
            '<a href="{}?automation__id__exact={}&status__exact={}">{}: {}</a>',
            (
                (url, automation.pk, status, R(status).label, counts.get(status, 0))
                for status in OUTCOMES
            ),
        )
        recent = automation.runs.select_related("invoice", "customer")[:10]
        rows = format_html_join(
            "",
            "<li>{} · {} · {} {}</li>",
            (
                (
                    run.created_at.strftime("%Y-%m-%d %H:%M"),
                    run.invoice or run.customer or "-",
                    run.get_status_display(),
                    run.waiting_for or run.reason,
                )
                for run in recent
            ),
        )
        return format_html("<p>{}</p><ul>{}</ul>", totals, rows)

    def save_model(self, request, obj, form, change):
        now = system_now()
        if obj.pk is None:
            obj.created_at = now
        if obj.enabled and (not change or "enabled" in form.changed_data):
            obj.enabled_at = now
        super().save_model(request, obj, form, change)

    def save_related(self, request, form, formsets, change):
        super().save_related(request, form, formsets, change)
        automation_publish(form.instance, now=system_now())

    @admin.action(description=_("Enable the selected automations"))
    def enable(self, request, queryset):
        now = system_now()
        for automation in queryset:
            automation_set_enabled(automation, enabled=True, now=now)
        self.message_user(request, _gettext("Automations enabled: %(n)d.") % {"n": len(queryset)},
                          messages.SUCCESS)

    @admin.action(description=_("Disable the selected automations"))
    def disable(self, request, queryset):
        now = system_now()
        for automation in queryset:
            automation_set_enabled(automation, enabled=False, now=now)
        self.message_user(request, _gettext(
            "Automations disabled: %(n)d (runs already started go on; cancel them from the "
            "runs).") % {"n": len(queryset)}, messages.SUCCESS)

    # --- recipes and dry run ---

    def get_urls(self):
        wrap = self.admin_site.admin_view
        return [
            path("recipes/", wrap(self.recipes_view), name="automations_automation_recipes"),
            path(
                "<path:object_id>/dry-run/",
                wrap(self.dry_run_view),
                name="automations_automation_dry_run",
            ),
            *super().get_urls(),
        ]

    def recipes_view(self, request):
        if not self.has_add_permission(request):
            raise PermissionDenied
        if request.method == "POST":
            try:
                automation = recipe_install(request.POST.get("recipe", ""), now=system_now())
            except DomainError as error:
                self.message_user(request, error.message, messages.ERROR)
            else:
                self.message_user(
                    request,
                    _gettext("%(name)s installed, disabled: check it, then enable it.")
                    % {"name": automation.name},
                    messages.SUCCESS,
                )
                return redirect("admin:automations_automation_change", automation.pk)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": _gettext("Install a recipe"),
            "recipes": RECIPES.values(),
        }
        return TemplateResponse(request, "admin/automations/automation/recipes.html", context)

    def dry_run_view(self, request, object_id):
        automation = self.get_object(request, unquote(object_id))
        if automation is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        try:
            days = int(request.GET.get("days", 30))
        except ValueError:
            days = 30
        plan = plan_of(automation)
        result = dry_run(plan, now=system_now(), days=days)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": automation,
            "days": days,
            "max_days": MAX_DAYS,
            "days_input_classes": input_classes(forms.NumberInput()),
            "result": result,
            "summary": plan_summary(plan),
            "title": _gettext("Dry run of %(name)s") % {"name": automation.name},
        }
        return TemplateResponse(request, "admin/automations/automation/dry_run.html", context)


@admin.register(AutomationRun)
class AutomationRunAdmin(ModelAdmin):
    list_display = (
        "id",
        "automation",
        "status",
        "subject",
        "step",
        "waiting_for",
        "resume_at",
        "reason",
        "created_at",
    )
    list_filter = ("status", "automation")
    list_select_related = ("automation", "invoice", "customer")
    readonly_fields = (
        "automation",
        "version",
        "key",
        "event_id",
        "invoice",
        "customer",
        "subscription_id",
        "status",
        "step",
        "resume_at",
        "waiting_for",
        "depth",
        "reason",
        "created_at",
        "updated_at",
        "steps_text",
    )
    fields = readonly_fields
    actions = ["cancel"]
    show_full_result_count = False

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description=pgettext_lazy("automation", "about"))
    def subject(self, run):
        return (
            run.invoice
            or run.customer
            or (f"sub #{run.subscription_id}" if run.subscription_id else "-")
        )

    @admin.display(description=_("steps (pinned version)"))
    def steps_text(self, run):
        return json.dumps(run.version.plan["steps"], indent=1, ensure_ascii=False)

    @admin.action(description=_("Cancel the selected runs"))
    def cancel(self, request, queryset):
        now, actor = system_now(), Actor.staff(request.user)
        canceled = sum(run_cancel(run, now=now, actor=actor) for run in queryset)
        skipped = len(queryset) - canceled
        self.message_user(
            request,
            _gettext("%(n)d runs canceled; %(m)d had already ended.")
            % {"n": canceled, "m": skipped},
            messages.SUCCESS if canceled else messages.WARNING,
        )


def _automation_sentence(event, currency) -> str:
    data = event.data or {}
    text = data.get("text", "")
    name = event.actor_label or _gettext("Automation")
    if event.type == "automation.step":
        return _gettext("%(automation)s, step %(step)s: %(text)s") % {
            "automation": name, "step": data.get("step", ""), "text": text}
    if event.type == "automation.waiting":
        until = data.get("until", "")
        return _gettext("%(automation)s waits: %(text)s (until %(until)s)") % {
            "automation": name, "text": text, "until": until[:16].replace("T", " ")}
    verb = {
        "automation.completed": _gettext("finished"),
        "automation.exited": _gettext("stopped"),
        "automation.failed": _gettext("could not go on"),
        "automation.canceled": _gettext("was canceled"),
    }.get(event.type, event.type)
    return f"{name} {verb}: {text}" if text else f"{name} {verb}"


describes(
    "automation.step", "automation.waiting", "automation.completed", "automation.exited",
    "automation.failed", "automation.canceled",
)(_automation_sentence)
