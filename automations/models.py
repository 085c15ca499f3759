"""Collection settings: the billing settings singleton, named retry policies, and what
Smart Retries have learned from this system's own payment history."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from customers.money import is_int, validate_amounts_by_currency
from customers.singletons import Singleton

MAX_RETRIES = 8
WINDOW_CHOICES = [
    (7, _("1 week")),
    (14, _("2 weeks")),
    (21, _("3 weeks")),
    (30, _("1 month")),
    (60, _("2 months")),
]
UNCOLLECTIBLE_CHOICES = [
    (None, _("Leave past due")),
    (30, _("After 30 days past due")),
    (60, _("After 60 days past due")),
    (90, _("After 90 days past due")),
]


class SubscriptionAfterLastRetry(models.TextChoices):
    """What happens to a subscription when the last retry of its invoice fails."""

    CANCEL = "cancel", _("Cancel the subscription")
    MARK_UNPAID = "mark_unpaid", _("Mark the subscription unpaid")
    PAUSE = "pause", _("Pause the subscription")
    LEAVE_PAST_DUE = "leave_past_due", _("Leave the subscription past due")


def validate_custom_schedule(value) -> None:
    if not isinstance(value, list) or not all(is_int(days) for days in value):
        raise ValidationError(_("The custom schedule is a list of whole days, e.g. [1, 3, 5]."))
    if len(value) > MAX_RETRIES:
        raise ValidationError(
            _("At most %(n)s retries (got %(got)s)."), params={"n": MAX_RETRIES, "got": len(value)}
        )
    if any(not 1 <= days <= 60 for days in value):
        raise ValidationError(_("Each retry comes 1 to 60 days after the previous attempt."))


def validate_segments(value) -> None:
    if not isinstance(value, list) or not all(isinstance(s, str) and s for s in value):
        raise ValidationError(_('Segments are a list of names, e.g. ["enterprise"].'))


class RetryPolicy(models.Model):
    """How failed automatic payments are retried. The billing settings name the default
    one; a policy listing customer segments applies to those customers instead."""

    class Mode(models.TextChoices):
        SMART = "smart", _("Smart Retries")
        FIXED = "fixed", _("Fixed schedule, evenly spread over the window")
        CUSTOM = "custom", _("Custom schedule (days after the previous attempt)")

    class AfterLastRetry(models.TextChoices):
        MARK_UNCOLLECTIBLE = "mark_uncollectible", _("Mark the invoice uncollectible")
        LEAVE_PAST_DUE = "leave_past_due", _("Leave the invoice past due")

    name = models.CharField(_("name"), max_length=100, unique=True)
    mode = models.CharField(_("mode"), max_length=10, choices=Mode.choices, default=Mode.SMART)
    max_retries = models.PositiveSmallIntegerField(
        _("retries"),
        default=MAX_RETRIES,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_RETRIES)],
        help_text=_("Up to 8 retries after the first failed attempt (smart and fixed modes)."),
    )
    window_days = models.PositiveSmallIntegerField(
        _("within"), choices=WINDOW_CHOICES, default=14,
        help_text=_("All retries happen within this time after the first failure."),
    )
    custom_schedule = models.JSONField(
        _("custom schedule"), default=list, blank=True, validators=[validate_custom_schedule],
        help_text=_("Custom mode: days after the previous attempt, e.g. [1, 3, 5, 7]."),
    )
    after_last_retry = models.CharField(
        _("after the last retry fails"), max_length=20, choices=AfterLastRetry.choices,
        default=AfterLastRetry.LEAVE_PAST_DUE,
    )
    customer_segments = models.JSONField(
        _("customer segments"), default=list, blank=True, validators=[validate_segments],
        help_text=_("Customers of these segments use this policy instead of the default."),
    )
    subscription_after_last_retry = models.CharField(
        _("subscription after the last retry fails"), max_length=20, blank=True,
        choices=SubscriptionAfterLastRetry.choices,
        help_text=_("Empty: as the billing settings say."),
    )

    class Meta:
        verbose_name = _("retry policy")
        verbose_name_plural = _("retry policies")
        ordering = ["name"]

    def __str__(self):
        return self.name

    def clean(self):
        if self.mode == self.Mode.CUSTOM and not self.custom_schedule:
            raise ValidationError(
                {"custom_schedule": _("A custom policy needs at least one retry.")}
            )

    @property
    def retry_budget(self) -> int:
        return len(self.custom_schedule) if self.mode == self.Mode.CUSTOM else self.max_retries


class BillingSettings(Singleton, models.Model):
    """The one billing settings screen (DESIGN.md section 4). A singleton: `load()`."""

    automatic_collection = models.BooleanField(
        _("automatic collection"), default=True,
        help_text=_("Charge, retry and move invoices on their own. Off: nothing is "
                    "charged automatically; staff and customers can still pay."),
    )
    default_retry_policy = models.ForeignKey(
        RetryPolicy, verbose_name=_("default retry policy"), on_delete=models.PROTECT,
        related_name="+",
    )
    uncollectible_after_days = models.PositiveSmallIntegerField(
        _("past-due invoices"), choices=UNCOLLECTIBLE_CHOICES, null=True, blank=True,
        default=None,
    )
    subscription_after_last_retry = models.CharField(
        _("subscription after the last retry fails"), max_length=20,
        choices=SubscriptionAfterLastRetry.choices,
        default=SubscriptionAfterLastRetry.LEAVE_PAST_DUE,
        help_text=_("Unpaid: invoices keep being created as drafts but are not collected."),
    )
    partial_payment_tolerance = models.JSONField(
        _("reconcile partial payments within"), default=dict, blank=True,
        validators=[validate_amounts_by_currency],
        help_text=_('Minor units per currency, e.g. {"EUR": 100} for 1.00 €: a payment that '
                    "leaves at most this much unpaid closes the invoice with a credit note."),
    )

    class Meta:
        verbose_name = _("billing settings")
        verbose_name_plural = _("billing settings")

    def __str__(self):
        return str(_("Billing settings"))

    @classmethod
    def load_row(cls) -> "BillingSettings":
        settings = cls.objects.select_related("default_retry_policy").filter(pk=1).first()
        if settings is not None:
            return settings
        policy, _created = RetryPolicy.objects.get_or_create(
            name=str(_("Default")), defaults={"mode": RetryPolicy.Mode.SMART}
        )
        settings, _created = cls.objects.get_or_create(
            pk=1, defaults={"default_retry_policy": policy}
        )
        return settings

    def tolerance_for(self, currency: str) -> int:
        return int(self.partial_payment_tolerance.get(currency, 0))


class RetryStat(models.Model):
    """Counts of retries and their successes, by the decline being retried and one
    dimension of the retry's timing: what Smart Retries learn from. Updated in the
    transaction that records each outcome."""

    class Dimension(models.TextChoices):
        ALL = "all", _("all retries")
        HOUR = "hour", _("hour of day (customer time)")
        DAY = "day", _("day of month")
        AGE = "age", _("days since the first failure")

    decline_code = models.CharField(_("decline code"), max_length=64)
    dimension = models.CharField(_("dimension"), max_length=8, choices=Dimension.choices)
    bucket = models.SmallIntegerField(_("bucket"))
    attempts = models.PositiveIntegerField(_("retries"), default=0)
    successes = models.PositiveIntegerField(_("successes"), default=0)

    class Meta:
        verbose_name = _("retry statistic")
        verbose_name_plural = _("retry statistics")
        constraints = [
            models.UniqueConstraint(
                fields=["decline_code", "dimension", "bucket"], name="retrystat_unique"
            )
        ]

    def __str__(self):
        return (f"{self.decline_code} {self.dimension}={self.bucket}: "
                f"{self.successes}/{self.attempts}")


from .engine.models import (  # noqa: E402,F401
    Automation,
    AutomationRun,
    AutomationStep,
    AutomationVersion,
    InvoiceRetryPolicy,
)
from .notifications.models import (  # noqa: E402,F401
    CustomerNotificationPreference,
    EmailTemplate,
    NotificationSchedule,
    NotificationSettings,
    OutboxMessage,
)
