"""The automation engine's tables: automations and their steps (what staff edit), the
versions runs are pinned to, the runs themselves (a due row each, never a Celery
countdown), and the retry policy an automation started for an invoice."""

from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy

from customers.models import Customer
from invoices.models import Event, Invoice

from ..models import RetryPolicy


class Automation(models.Model):
    """A trigger, conditions and ordered steps. What runs is its published version
    (`live_version`): editing never changes the runs already started."""

    name = models.CharField(pgettext_lazy("automation", "name"), max_length=120, unique=True)
    enabled = models.BooleanField(pgettext_lazy("automation", "enabled"), default=False)
    trigger = models.CharField(pgettext_lazy("automation", "trigger"), max_length=48)
    days = models.PositiveSmallIntegerField(
        pgettext_lazy("automation", "days"),
        null=True,
        blank=True,
        help_text=_("For the triggers counted in days: past due by, or due in, this many days."),
    )
    conditions = models.JSONField(
        pgettext_lazy("automation", "conditions"),
        default=dict,
        blank=True,
        help_text=_(
            '{"all": [{"field": "invoice.total", "op": "gte", "value": 50000, '
            '"currency": "USD"}]}; groups nest with "all" (AND) and "any" (OR).'
        ),
    )
    priority = models.PositiveSmallIntegerField(
        pgettext_lazy("automation", "order"),
        default=100,
        help_text=_("When several automations match one event, lower numbers run first."),
    )
    recipe = models.CharField(_("installed from recipe"), max_length=40, blank=True, editable=False)
    live_version = models.ForeignKey(
        "AutomationVersion",
        verbose_name=_("published version"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        editable=False,
    )
    created_at = models.DateTimeField(pgettext_lazy("automation", "created at"), editable=False)
    enabled_at = models.DateTimeField(
        pgettext_lazy("automation", "enabled at"), null=True, editable=False
    )
    # The day-counted triggers' scan has looked at every moment up to here (scan.py).
    scanned_until = models.DateTimeField(null=True, editable=False)

    class Meta:
        verbose_name = pgettext_lazy("automation", "automation")
        verbose_name_plural = pgettext_lazy("automation", "automations")
        ordering = ["priority", "id"]
        indexes = [
            models.Index(
                fields=["trigger"], name="automation_trigger_idx", condition=Q(enabled=True)
            )
        ]

    def __str__(self):
        return self.name


class AutomationStep(models.Model):
    automation = models.ForeignKey(
        Automation,
        verbose_name=pgettext_lazy("automation", "automation"),
        on_delete=models.CASCADE,
        related_name="steps",
    )
    position = models.PositiveSmallIntegerField(pgettext_lazy("automation", "position"), default=0)
    kind = models.CharField(pgettext_lazy("automation", "step"), max_length=32)
    params = models.JSONField(pgettext_lazy("automation", "parameters"), default=dict, blank=True)

    class Meta:
        verbose_name = pgettext_lazy("automation", "step")
        verbose_name_plural = pgettext_lazy("automation", "steps")
        ordering = ["position", "id"]

    def __str__(self):
        return f"{self.position}. {self.kind}"


class AutomationVersion(models.Model):
    """What one published version of an automation does, frozen: {"trigger", "days",
    "conditions", "steps": [{"kind", "params"}]}."""

    automation = models.ForeignKey(
        Automation,
        verbose_name=pgettext_lazy("automation", "automation"),
        on_delete=models.CASCADE,
        related_name="versions",
    )
    number = models.PositiveIntegerField(pgettext_lazy("automation", "version"))
    plan = models.JSONField(pgettext_lazy("automation", "plan"))
    created_at = models.DateTimeField(pgettext_lazy("automation", "created at"))

    class Meta:
        verbose_name = _("automation version")
        verbose_name_plural = _("automation versions")
        constraints = [
            models.UniqueConstraint(
                fields=["automation", "number"], name="automation_version_unique"
            )
        ]

    def __str__(self):
        return f"{self.automation} v{self.number}"


class AutomationRun(models.Model):
    """One run of one automation version for one triggering event (or, for triggers
    counted in days, one invoice): unique. Waiting runs are due at `resume_at`."""

    class Status(models.TextChoices):
        WAITING = "waiting", pgettext_lazy("automation", "Waiting")
        COMPLETED = "completed", pgettext_lazy("automation", "Completed")
        EXITED = "exited", _("Exited (no longer needed)")
        FAILED = "failed", _("Stopped: a step could not apply")
        CANCELED = "canceled", _("Canceled by staff")

    automation = models.ForeignKey(
        Automation,
        verbose_name=pgettext_lazy("automation", "automation"),
        on_delete=models.CASCADE,
        related_name="runs",
    )
    version = models.ForeignKey(
        AutomationVersion,
        verbose_name=pgettext_lazy("automation", "version"),
        on_delete=models.PROTECT,
        related_name="+",
    )
    key = models.CharField(_("trigger key"), max_length=40)
    event = models.ForeignKey(
        Event,
        verbose_name=_("triggering event"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_constraint=False,
        db_index=False,
    )
    invoice = models.ForeignKey(
        Invoice,
        verbose_name=pgettext_lazy("automation", "invoice"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="automation_runs",
        db_index=False,
    )
    customer = models.ForeignKey(
        Customer,
        verbose_name=pgettext_lazy("automation", "customer"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="automation_runs",
        db_index=False,
    )
    subscription_id = models.BigIntegerField(_("subscription (id)"), null=True, blank=True)
    status = models.CharField(
        pgettext_lazy("automation", "status"),
        max_length=10,
        choices=Status.choices,
        default=Status.WAITING,
    )
    step = models.PositiveSmallIntegerField(pgettext_lazy("automation", "next step"), default=0)
    resume_at = models.DateTimeField(
        pgettext_lazy("automation", "resumes at"), null=True, blank=True
    )
    waiting_for = models.CharField(_("waiting for"), max_length=200, blank=True)
    depth = models.PositiveSmallIntegerField(_("chain depth"), default=0)
    reason = models.CharField(pgettext_lazy("automation", "outcome"), max_length=300, blank=True)
    created_at = models.DateTimeField(pgettext_lazy("automation", "created at"))
    updated_at = models.DateTimeField(pgettext_lazy("automation", "updated at"))

    class Meta:
        verbose_name = _("automation run")
        verbose_name_plural = _("automation runs")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["automation", "key"], name="automation_run_unique")
        ]
        indexes = [
            # The sweep's one probe: only waiting runs are in it.
            models.Index(
                fields=["resume_at"], name="automation_run_due_idx", condition=Q(status="waiting")
            ),
            models.Index(
                fields=["invoice"],
                name="automation_run_invoice_idx",
                condition=Q(invoice__isnull=False),
            ),
            models.Index(
                fields=["customer"],
                name="automation_run_customer_idx",
                condition=Q(customer__isnull=False),
            ),
            models.Index(
                fields=["subscription_id"],
                name="automation_run_sub_idx",
                condition=Q(subscription_id__isnull=False),
            ),
            models.Index(fields=["automation", "status"], name="automation_run_outcome_idx"),
        ]

    def __str__(self):
        return f"{self.automation} #{self.pk}"


class InvoiceRetryPolicy(models.Model):
    """The retry policy an automation started for one invoice: it replaces the default
    (and segment) policy from the invoice's next retry."""

    invoice = models.OneToOneField(
        Invoice,
        verbose_name=pgettext_lazy("automation", "invoice"),
        on_delete=models.CASCADE,
        primary_key=True,
        related_name="automation_retry_policy",
    )
    policy = models.ForeignKey(
        RetryPolicy, verbose_name=_("retry policy"), on_delete=models.PROTECT, related_name="+"
    )
    automation = models.ForeignKey(
        Automation,
        verbose_name=pgettext_lazy("automation", "automation"),
        null=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    started_at = models.DateTimeField(pgettext_lazy("automation", "started at"))

    class Meta:
        verbose_name = _("invoice retry policy")
        verbose_name_plural = _("invoice retry policies")

    def __str__(self):
        return f"{self.invoice_id}: {self.policy}"
