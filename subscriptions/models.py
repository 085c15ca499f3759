"""Recurring billing, with Stripe's names (DESIGN.md section 7): products, their prices,
subscriptions to prices, and the one invoice of each billed period."""

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from customers.models import Customer, PaymentMethod, validate_metadata
from customers.money import MAX_AMOUNT, validate_currency
from invoices.models import MAX_QUANTITY, Invoice, TaxRate

# At most one year between bills, as Stripe: the largest interval_count per interval.
MAX_INTERVAL_COUNT = {"day": 365, "week": 52, "month": 12, "year": 1}


class Product(models.Model):
    name = models.CharField(_("name"), max_length=200)
    description = models.TextField(_("description"), blank=True)
    active = models.BooleanField(
        _("active"), default=True, help_text=_("Archived products take no new subscriptions.")
    )
    metadata = models.JSONField(
        _("metadata"), default=dict, blank=True, validators=[validate_metadata]
    )
    created_at = models.DateTimeField(_("created at"), editable=False)

    class Meta:
        verbose_name = _("product")
        verbose_name_plural = _("products")
        ordering = ["name", "id"]

    def __str__(self):
        return self.name


class Price(models.Model):
    class Type(models.TextChoices):
        RECURRING = "recurring", _("Recurring")
        ONE_TIME = "one_time", _("One-off")

    class Interval(models.TextChoices):
        DAY = "day", _("day")
        WEEK = "week", _("week")
        MONTH = "month", _("month")
        YEAR = "year", _("year")

    class TaxBehavior(models.TextChoices):
        EXCLUSIVE = "exclusive", _("Exclusive (tax added)")
        INCLUSIVE = "inclusive", _("Inclusive (tax included)")

    product = models.ForeignKey(
        Product, verbose_name=_("product"), on_delete=models.PROTECT, related_name="prices"
    )
    nickname = models.CharField(_("nickname"), max_length=100, blank=True)
    currency = models.CharField(_("currency"), max_length=3, validators=[validate_currency])
    unit_amount = models.BigIntegerField(
        _("unit amount (minor units)"),
        validators=[MinValueValidator(0), MaxValueValidator(MAX_AMOUNT)],
    )
    type = models.CharField(_("type"), max_length=10, choices=Type.choices, default=Type.RECURRING)
    # Stripe's recurring.interval and recurring.interval_count (blank for one-off prices).
    recurring_interval = models.CharField(
        _("billing interval"), max_length=5, choices=Interval.choices, blank=True
    )
    recurring_interval_count = models.PositiveSmallIntegerField(
        _("interval count"), default=1, validators=[MinValueValidator(1), MaxValueValidator(365)]
    )
    tax_behavior = models.CharField(
        _("tax behavior"), max_length=10, choices=TaxBehavior.choices,
        default=TaxBehavior.EXCLUSIVE,
    )
    tax_rates = models.ManyToManyField(
        TaxRate, verbose_name=_("tax rates"), blank=True, related_name="+",
        help_text=_("Applied to the invoice lines of this price."),
    )
    active = models.BooleanField(
        _("active"), default=True,
        help_text=_("An archived price keeps its subscriptions but takes no new ones."),
    )
    created_at = models.DateTimeField(_("created at"), editable=False)

    class Meta:
        verbose_name = _("price")
        verbose_name_plural = _("prices")
        ordering = ["product", "currency", "unit_amount", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(type="one_time", recurring_interval="")
                | Q(type="recurring", recurring_interval__in=["day", "week", "month", "year"]),
                name="price_recurring_has_interval",
            ),
        ]

    def __str__(self):
        from customers.money import format_money

        amount = format_money(self.unit_amount, self.currency)
        label = self.nickname or self.product.name
        if self.type == self.Type.ONE_TIME:
            return f"{label}: {amount}"
        return f"{label}: {amount} / {self.interval_label}"

    def clean(self):
        if self.type == self.Type.ONE_TIME:
            self.recurring_interval = ""
            return
        limit = MAX_INTERVAL_COUNT.get(self.recurring_interval)
        if limit is None:
            raise ValidationError({"recurring_interval": _("A recurring price needs an interval.")})
        if self.recurring_interval_count and self.recurring_interval_count > limit:
            raise ValidationError({"recurring_interval_count": _(
                "At most one year between bills: every %(max)s %(interval)s(s) at most."
            ) % {"max": limit, "interval": self.recurring_interval}})

    def amount_in(self, currency: str) -> int | None:
        """The unit amount in `currency`: the price's own, or one of its currency options
        (Stripe's currency_options); None when the price has no amount in it. Reads the
        options through .all() (prefetch them when pricing many)."""
        if currency == self.currency:
            return self.unit_amount
        for option in self.currency_options.all():
            if option.currency == currency:
                return option.unit_amount
        return None

    def currencies(self) -> list[str]:
        return [self.currency] + sorted(o.currency for o in self.currency_options.all())

    @property
    def interval_label(self) -> str:
        if self.recurring_interval_count == 1:
            return str(self.get_recurring_interval_display())
        return f"{self.recurring_interval_count} {self.get_recurring_interval_display()}s"


class PriceCurrencyOption(models.Model):
    """One more currency of a price (Stripe's currency_options): a customer billed in
    that currency subscribes to the same price at this amount."""

    price = models.ForeignKey(
        Price, verbose_name=_("price"), on_delete=models.CASCADE,
        related_name="currency_options",
    )
    currency = models.CharField(_("currency"), max_length=3, validators=[validate_currency])
    unit_amount = models.BigIntegerField(
        _("unit amount (minor units)"),
        validators=[MinValueValidator(0), MaxValueValidator(MAX_AMOUNT)],
    )

    class Meta:
        verbose_name = _("currency option")
        verbose_name_plural = _("currency options")
        ordering = ["price", "currency"]
        constraints = [
            models.UniqueConstraint(fields=["price", "currency"], name="price_currency_once"),
        ]

    def __str__(self):
        from customers.money import format_money

        return format_money(self.unit_amount, self.currency)

    def clean(self):
        if self.currency:
            self.currency = self.currency.upper()
        if self.price_id and self.currency and self.currency == self.price.currency:
            raise ValidationError({"currency": _(
                "%(c)s is the price's own currency: its amount is the price's unit amount."
            ) % {"c": self.currency}})


class Subscription(models.Model):
    class Status(models.TextChoices):
        INCOMPLETE = "incomplete", _("Incomplete")
        INCOMPLETE_EXPIRED = "incomplete_expired", _("Incomplete, expired")
        TRIALING = "trialing", _("Trialing")
        ACTIVE = "active", _("Active")
        PAST_DUE = "past_due", _("Past due")
        UNPAID = "unpaid", _("Unpaid")
        PAUSED = "paused", _("Paused")
        CANCELED = "canceled", _("Canceled")

    class PauseBehavior(models.TextChoices):
        KEEP_AS_DRAFT = "keep_as_draft", _("Keep invoices as drafts")
        MARK_UNCOLLECTIBLE = "mark_uncollectible", _("Mark invoices uncollectible")
        VOID = "void", _("Void invoices")

    class CancellationReason(models.TextChoices):  # Stripe's cancellation_details.reason
        REQUESTED = "cancellation_requested", _("Requested by the customer")
        PAYMENT_FAILED = "payment_failed", _("Payment failed")
        PAYMENT_DISPUTED = "payment_disputed", _("Payment disputed")

    class Feedback(models.TextChoices):  # Stripe's cancellation_details.feedback
        CUSTOMER_SERVICE = "customer_service", _("Customer service")
        LOW_QUALITY = "low_quality", _("Low quality")
        MISSING_FEATURES = "missing_features", _("Missing features")
        OTHER = "other", _("Other")
        SWITCHED_SERVICE = "switched_service", _("Switched service")
        TOO_COMPLEX = "too_complex", _("Too complex")
        TOO_EXPENSIVE = "too_expensive", _("Too expensive")
        UNUSED = "unused", _("Unused")

    # Not indexed alone: subscription_customer_idx (customer, -created_at) serves every
    # lookup by customer. A renewal moves the row to new index entries in each index (its
    # period end is indexed): one index fewer to write per renewal.
    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.PROTECT,
        related_name="subscriptions", db_index=False,
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.INCOMPLETE,
        editable=False,
    )
    currency = models.CharField(_("currency"), max_length=3, editable=False)
    collection_method = models.CharField(
        _("collection method"), max_length=24, choices=Invoice.CollectionMethod.choices,
        default=Invoice.CollectionMethod.CHARGE_AUTOMATICALLY,
    )
    days_until_due = models.PositiveSmallIntegerField(
        _("days until due"), null=True, blank=True, validators=[MaxValueValidator(365)],
        help_text=_("Send-invoice subscriptions: payment terms of each invoice."),
    )
    # Indexed where set only (subscription_method_idx): most are empty.
    default_payment_method = models.ForeignKey(
        PaymentMethod, verbose_name=_("default payment method"), null=True, blank=True,
        on_delete=models.SET_NULL, related_name="+", db_index=False,
        help_text=_("Empty: the customer's default payment method."),
    )
    # All moments are UTC instants; periods are computed from the anchor (periods.py).
    billing_cycle_anchor = models.DateTimeField(_("billing cycle anchor"), editable=False)
    current_period_start = models.DateTimeField(_("current period start"), editable=False)
    # The renewal's "next action at": the sweep takes subscriptions whose period ended.
    current_period_end = models.DateTimeField(_("current period end"), editable=False)
    # How many periods since the anchor the current one ends at (periods.period_end(n)).
    period_index = models.PositiveIntegerField(default=1, editable=False)
    trial_start = models.DateTimeField(_("trial start"), null=True, blank=True, editable=False)
    trial_end = models.DateTimeField(_("trial end"), null=True, blank=True, editable=False)
    cancel_at_period_end = models.BooleanField(
        _("cancels at period end"), default=False, editable=False
    )
    cancel_at = models.DateTimeField(_("cancels at"), null=True, blank=True, editable=False)
    canceled_at = models.DateTimeField(_("canceled at"), null=True, blank=True, editable=False)
    ended_at = models.DateTimeField(_("ended at"), null=True, blank=True, editable=False)
    cancellation_reason = models.CharField(
        _("cancellation reason"), max_length=24, choices=CancellationReason.choices,
        blank=True, editable=False,
    )
    cancellation_feedback = models.CharField(
        _("cancellation feedback"), max_length=20, choices=Feedback.choices, blank=True,
        editable=False,
    )
    cancellation_comment = models.TextField(_("cancellation comment"), blank=True, editable=False)
    pause_collection = models.CharField(
        _("paused collection"), max_length=20, choices=PauseBehavior.choices, blank=True,
        editable=False,
    )
    pause_resumes_at = models.DateTimeField(
        _("resumes at"), null=True, blank=True, editable=False
    )
    # When to announce what comes next (trial_will_end, invoice.upcoming); NULL once done.
    notice_at = models.DateTimeField(_("next notice at"), null=True, blank=True, editable=False)
    # Indexed: deleting an invoice (a draft) checks that no subscription points at it.
    latest_invoice = models.ForeignKey(
        Invoice, verbose_name=_("latest invoice"), null=True, blank=True, editable=False,
        on_delete=models.SET_NULL, related_name="+",
    )
    metadata = models.JSONField(
        _("metadata"), default=dict, blank=True, validators=[validate_metadata]
    )
    created_at = models.DateTimeField(_("created at"), editable=False)

    class Meta:
        verbose_name = _("subscription")
        verbose_name_plural = _("subscriptions")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "-created_at"], name="subscription_customer_idx"),
            models.Index(fields=["status", "-created_at"], name="subscription_status_idx"),
            # Renewals due: only subscriptions that still renew are in it.
            models.Index(
                fields=["current_period_end"], name="subscription_renewal_idx",
                condition=Q(status__in=["trialing", "active", "past_due", "unpaid", "paused"]),
            ),
            models.Index(
                fields=["created_at"], name="subscription_incomplete_idx",
                condition=Q(status="incomplete"),
            ),
            models.Index(
                fields=["notice_at"], name="subscription_notice_idx",
                condition=Q(notice_at__isnull=False),
            ),
            models.Index(
                fields=["pause_resumes_at"], name="subscription_resume_idx",
                condition=Q(status="paused", pause_resumes_at__isnull=False),
            ),
            # Detaching a payment method sets it to NULL where it is the default.
            models.Index(
                fields=["default_payment_method"], name="subscription_method_idx",
                condition=Q(default_payment_method__isnull=False),
            ),
        ]

    def __str__(self):
        return f"sub_{self.pk}" if self.pk else str(_("New subscription"))


class SubscriptionItem(models.Model):
    subscription = models.ForeignKey(
        Subscription, verbose_name=_("subscription"), on_delete=models.CASCADE,
        related_name="items",
    )
    price = models.ForeignKey(
        Price, verbose_name=_("price"), on_delete=models.PROTECT, related_name="items"
    )
    quantity = models.PositiveIntegerField(
        _("quantity"), default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_QUANTITY)],
    )
    created_at = models.DateTimeField(_("created at"), editable=False)

    class Meta:
        verbose_name = _("subscription item")
        verbose_name_plural = _("subscription items")
        ordering = ["id"]
        constraints = [
            models.UniqueConstraint(fields=["subscription", "price"], name="item_price_once"),
        ]

    def __str__(self):
        return f"{self.quantity} x {self.price}"


class SubscriptionInvoice(models.Model):
    """Which invoice billed which period of a subscription. The unique constraint makes
    a period billed once, whatever runs twice or at the same time."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.PROTECT, related_name="billed_periods"
    )
    invoice = models.OneToOneField(Invoice, on_delete=models.PROTECT, related_name="+")
    billing_reason = models.CharField(max_length=24, choices=Invoice.BillingReason.choices)
    period_start = models.DateTimeField(_("period start"))
    period_end = models.DateTimeField(_("period end"))

    class Meta:
        verbose_name = _("billed period")
        verbose_name_plural = _("billed periods")
        ordering = ["subscription", "period_start"]
        constraints = [
            models.UniqueConstraint(
                fields=["subscription", "period_start"], name="subscription_period_once",
                condition=Q(billing_reason__in=["subscription_create", "subscription_cycle"]),
            ),
        ]

    def __str__(self):
        return f"{self.period_start:%Y-%m-%d} – {self.period_end:%Y-%m-%d}"


class PendingItem(models.Model):
    """A proration waiting for the subscription's next invoice (Stripe's pending invoice
    items, create_prorations): a charge for the remaining time of the new plan, or a
    credit (negative) for the unused time of the old one."""

    subscription = models.ForeignKey(
        Subscription, on_delete=models.CASCADE, related_name="pending_items"
    )
    description = models.CharField(_("description"), max_length=500)
    amount = models.BigIntegerField(
        _("amount (minor units)"),
        validators=[MinValueValidator(-MAX_AMOUNT), MaxValueValidator(MAX_AMOUNT)],
    )
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    period_start = models.DateTimeField(_("period start"))
    period_end = models.DateTimeField(_("period end"))
    invoice = models.ForeignKey(
        Invoice, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        verbose_name = _("pending invoice item")
        verbose_name_plural = _("pending invoice items")
        ordering = ["id"]
        indexes = [
            models.Index(
                fields=["subscription"], name="pending_item_open_idx",
                condition=Q(invoice__isnull=True),
            ),
        ]

    def __str__(self):
        return self.description
