"""The notifications' tables: settings, customer preferences, editable templates, the
outbox, and the per-invoice schedule that makes "what is due now" an index lookup."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, validate_email
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from customers.models import LOCALES, Customer
from customers.money import is_int, validate_amounts_by_currency
from customers.singletons import Singleton
from invoices.models import Invoice

from .kinds import KIND_CHOICES

DEFAULT_REMINDER_OFFSETS = [-7, -3, 0, 3, 7, 14, 30]
OFFSET_MIN, OFFSET_MAX = -60, 120


def default_reminder_offsets() -> list[int]:
    return list(DEFAULT_REMINDER_OFFSETS)


def validate_reminder_offsets(value) -> None:
    if not isinstance(value, list) or not all(is_int(v) for v in value):
        raise ValidationError(_("Reminder offsets are a list of whole days, e.g. [-7, 0, 7]."))
    outside = [v for v in value if not OFFSET_MIN <= v <= OFFSET_MAX]
    if outside:
        raise ValidationError(
            _("Offsets go from %(min)d to %(max)d days around the due date; not %(list)s.")
            % {"min": OFFSET_MIN, "max": OFFSET_MAX, "list": ", ".join(map(str, outside))}
        )
    if len(set(value)) != len(value):
        raise ValidationError(_("Each offset may appear only once."))


def validate_recipients(value: str) -> None:
    from .recipients import recipients_validate

    recipients_validate(value)


class NotificationSettings(Singleton, models.Model):
    """Account-wide email settings: a single row (pk=1), edited in the admin."""

    send_finalized_invoices = models.BooleanField(
        _("email finalized invoices"),
        default=True,
        help_text=_("Email each finalized 'send invoice' invoice to its customer, with its PDF."),
    )
    reminder_offsets = models.JSONField(
        _("reminder offsets (days)"),
        default=default_reminder_offsets,
        blank=True,
        validators=[validate_reminder_offsets],
        help_text=_(
            "Days relative to the due date (-60 to 120): -7 is a week before, 0 the due date, "
            "3 three days after. An empty list sends no reminders."
        ),
    )
    overdue_alert_thresholds = models.JSONField(
        _("overdue alert thresholds"),
        default=dict,
        blank=True,
        validators=[validate_amounts_by_currency],
        help_text=_(
            'Per currency, in minor units: {"EUR": 100000} alerts on EUR invoices with '
            "at least 1,000.00 remaining. Currencies not listed raise no alert."
        ),
    )
    overdue_alert_days = models.PositiveSmallIntegerField(
        _("alert after (days overdue)"),
        default=7,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
    )
    alert_recipients = models.TextField(
        _("alert recipients"),
        blank=True,
        validators=[validate_recipients],
        help_text=_("One address per line: staff users or addresses in the company's domain."),
    )
    digest_enabled = models.BooleanField(_("send the daily digest"), default=False)
    digest_recipients = models.TextField(
        _("digest recipients"),
        blank=True,
        validators=[validate_recipients],
        help_text=_("One address per line: staff users or addresses in the company's domain."),
    )
    digest_hour = models.PositiveSmallIntegerField(
        _("digest hour"),
        default=7,
        validators=[MaxValueValidator(23)],
        help_text=_("The digest of the previous day goes out at this hour (server time zone)."),
    )
    staff_locale = models.CharField(
        _("language of staff emails"), max_length=5, choices=LOCALES, default="en"
    )
    upcoming_renewal_days = models.PositiveSmallIntegerField(
        _("announce renewals (days before)"), default=7,
        validators=[MaxValueValidator(60)],
        help_text=_("Email customers this many days before a subscription renews (0: never)."),
    )
    upcoming_renewal_all_intervals = models.BooleanField(
        _("announce every renewal"), default=False,
        help_text=_("Off: yearly subscriptions only, as Stripe does by default."),
    )
    cancellation_survey_url = models.URLField(
        _("cancellation survey link"), blank=True,
        help_text=_("Shown in the cancellation confirmation email when set."),
    )
    from_email = models.CharField(
        _("from address"),
        max_length=254,
        blank=True,
        help_text=_("Blank: the server's default sender (DEFAULT_FROM_EMAIL)."),
    )

    class Meta:
        verbose_name = _("notification settings")
        verbose_name_plural = _("notification settings")

    def __str__(self):
        return str(_("Notification settings"))

    def clean(self):
        if self.from_email:
            try:
                validate_email(self.from_email)
            except ValidationError:
                raise ValidationError({"from_email": _("Enter a valid email address.")}) from None
        if self.digest_enabled and not self.digest_recipients.strip():
            raise ValidationError({"digest_recipients": _("Who should receive the digest?")})
        if isinstance(self.reminder_offsets, list):
            self.reminder_offsets = sorted(self.reminder_offsets)

    def alert_recipient_list(self) -> list[str]:
        from .recipients import addresses_parse

        return addresses_parse(self.alert_recipients)

    def digest_recipient_list(self) -> list[str]:
        from .recipients import addresses_parse

        return addresses_parse(self.digest_recipients)


class CustomerNotificationPreference(models.Model):
    """A customer's opt-outs, e.g. reminders paused while an invoice is in dispute."""

    customer = models.OneToOneField(
        Customer,
        verbose_name=_("customer"),
        primary_key=True,
        on_delete=models.CASCADE,
        related_name="notification_preference",
    )
    reminders_paused = models.BooleanField(
        _("reminders paused"),
        default=False,
        help_text=_("No payment reminders are sent to this customer while checked."),
    )
    reason = models.CharField(_("reason"), max_length=200, blank=True)

    class Meta:
        verbose_name = _("email preferences")
        verbose_name_plural = _("email preferences")

    def __str__(self):
        return str(self.customer)


class EmailTemplate(models.Model):
    """Staff's version of one email in one language; replaces the built-in text."""

    kind = models.CharField(_("email"), max_length=40, choices=KIND_CHOICES)
    locale = models.CharField(_("language"), max_length=5, choices=LOCALES)
    subject = models.CharField(_("subject"), max_length=300)
    text_body = models.TextField(_("plain text body"))
    html_body = models.TextField(_("HTML body"))
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("email template")
        verbose_name_plural = _("email templates")
        ordering = ["kind", "locale"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "locale"], name="email_template_kind_locale")
        ]

    def __str__(self):
        return f"{self.get_kind_display()} ({self.locale})"

    def clean(self):
        from .rendering import template_validate

        if self.kind:
            errors = template_validate(
                self.kind, subject=self.subject, text=self.text_body, html=self.html_body
            )
            if errors:
                raise ValidationError(errors)


class OutboxMessage(models.Model):
    """One email to deliver, written in the transaction of the change that caused it.

    `key` is unique per notification, so the same notification can never be queued
    twice. Delivery claims rows (status sending, `next_attempt_at` then holds the
    lease's expiry) and marks them sent; see delivery.py for the crash window."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")

    key = models.CharField(_("key"), max_length=200, unique=True)
    kind = models.CharField(_("email"), max_length=40)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.PENDING
    )
    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # outbox_customer_idx
    )
    invoice = models.ForeignKey(
        Invoice,
        verbose_name=_("invoice"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # outbox_invoice_idx
    )
    # The customer's test clock, copied when the row is written (a customer's clock is
    # set when it is created and never changes): a clock finds its next due moment in its
    # own partial indexes, without joining every row to its customer (automations.clocks).
    test_clock = models.ForeignKey(
        "customers.TestClock", verbose_name=_("test clock"), null=True, blank=True,
        editable=False, on_delete=models.SET_NULL, related_name="+", db_index=False,
    )
    # Explicit recipients (staff emails); empty: the customer's address at delivery time.
    to = models.JSONField(_("to"), default=list, blank=True)
    # Blank: the customer's preferred language at delivery time.
    locale = models.CharField(_("language"), max_length=5, blank=True)
    # What the email is about: ids and plain values (JSON); rendered at delivery time.
    context = models.JSONField(_("context"), default=dict, blank=True)
    # Documents to attach: [{"kind": "invoice", "id": 12}, ...], rendered at delivery.
    attachments = models.JSONField(_("attachments"), default=list, blank=True)
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    # Pending: when to try next. Sending: when the worker's lease on the row expires.
    next_attempt_at = models.DateTimeField(_("next attempt at"))
    last_error = models.TextField(_("last error"), blank=True)
    subject = models.CharField(_("subject"), max_length=300, blank=True)
    message_id = models.CharField(_("Message-ID"), max_length=250, blank=True)
    send_count = models.PositiveIntegerField(_("times sent"), default=0)
    created_at = models.DateTimeField(_("created at"))
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    class Meta:
        verbose_name = _("outbox email")
        verbose_name_plural = _("outbox emails")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(
                fields=["next_attempt_at"],
                name="outbox_due_idx",
                condition=Q(status__in=["pending", "sending"]),
            ),
            models.Index(fields=["-created_at", "-id"], name="outbox_created_idx"),
            models.Index(fields=["invoice", "created_at"], name="outbox_invoice_idx"),
            models.Index(fields=["customer", "created_at"], name="outbox_customer_idx"),
            models.Index(fields=["status", "-created_at"], name="outbox_status_idx"),
            models.Index(
                fields=["test_clock", "next_attempt_at"],
                name="outbox_clock_due_idx",
                condition=Q(status__in=["pending", "sending"], test_clock__isnull=False),
            ),
        ]

    def __str__(self):
        return self.key


class NotificationSchedule(models.Model):
    """When an open invoice next needs a reminder or an overdue alert.

    One row per open invoice, written when it is finalized and removed when it is
    paid, voided or marked uncollectible; the sweeps read the partial indexes, so a
    sweep with nothing due costs one index probe however many invoices are open."""

    invoice = models.OneToOneField(
        Invoice, primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    next_reminder_at = models.DateTimeField(null=True, blank=True)
    # The offset (days from the due date) of the last reminder sent or skipped.
    last_reminder_offset = models.SmallIntegerField(null=True, blank=True)
    overdue_alert_at = models.DateTimeField(null=True, blank=True)
    # The customer's test clock, copied when the row is written (a customer's clock is
    # set when it is created and never changes): a clock finds its next due moment in its
    # own partial indexes, without joining every row to its customer (automations.clocks).
    test_clock = models.ForeignKey(
        "customers.TestClock", verbose_name=_("test clock"), null=True, blank=True,
        editable=False, on_delete=models.SET_NULL, related_name="+", db_index=False,
    )

    class Meta:
        indexes = [
            models.Index(
                fields=["next_reminder_at"],
                name="notify_reminder_due_idx",
                condition=Q(next_reminder_at__isnull=False),
            ),
            models.Index(
                fields=["overdue_alert_at"],
                name="notify_alert_due_idx",
                condition=Q(overdue_alert_at__isnull=False),
            ),
            models.Index(
                fields=["test_clock", "next_reminder_at"],
                name="notify_clock_reminder_idx",
                condition=Q(next_reminder_at__isnull=False, test_clock__isnull=False),
            ),
            models.Index(
                fields=["test_clock", "overdue_alert_at"],
                name="notify_clock_alert_idx",
                condition=Q(overdue_alert_at__isnull=False, test_clock__isnull=False),
            ),
        ]

    def __str__(self):
        return f"schedule of invoice {self.invoice_id}"
