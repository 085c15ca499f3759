from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from customers.models import Customer
from customers.money import MAX_AMOUNT, format_money_here
from customers.singletons import Singleton

MAX_LINES = 250
MAX_QUANTITY = 1_000_000


class InvoicingSettings(Singleton, models.Model):
    """Account-wide invoicing settings: a single row (pk=1), edited in the admin."""

    class Numbering(models.TextChoices):
        PER_CUSTOMER = "customer", _("Per customer (PREFIX-0001)")
        ACCOUNT = "account", _("Account-wide (one sequence for all customers)")

    numbering = models.CharField(
        _("invoice numbering"),
        max_length=10,
        choices=Numbering.choices,
        default=Numbering.PER_CUSTOMER,
    )
    account_prefix = models.CharField(
        _("account-wide prefix"),
        max_length=12,
        default="INV",
        help_text=_("Used when numbering is account-wide: INV-0001, INV-0002..."),
    )
    auto_finalize_delay_hours = models.PositiveSmallIntegerField(
        _("auto-finalize drafts after (hours)"),
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(72)],
        help_text=_(
            "Drafts with automatic collection are finalized this long after creation (1 to 72)."
        ),
    )
    default_days_until_due = models.PositiveSmallIntegerField(
        _("default payment terms (days)"),
        default=30,
        validators=[MinValueValidator(0), MaxValueValidator(365)],
    )
    hosted_link_days_after_due = models.PositiveSmallIntegerField(
        _("invoice page links stay valid after the due date (days)"),
        default=30,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text=_(
            "Counted from finalization when the invoice has no due date, and from the "
            "moment a fresh link is issued when that is later."
        ),
    )
    hosted_link_max_days = models.PositiveSmallIntegerField(
        _("invoice page links stay valid at most (days)"),
        default=120,
        validators=[MinValueValidator(1), MaxValueValidator(365)],
        help_text=_("Counted from the moment the link was issued."),
    )

    class Meta:
        verbose_name = _("invoicing settings")
        verbose_name_plural = _("invoicing settings")

    def __str__(self):
        return str(_("Invoicing settings"))


class TaxRate(models.Model):
    display_name = models.CharField(
        _("name"), max_length=50, help_text=_("e.g. VAT, TVA, Sales tax")
    )
    percentage = models.DecimalField(
        _("percentage"),
        max_digits=7,
        decimal_places=4,
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    inclusive = models.BooleanField(
        _("inclusive"),
        default=False,
        help_text=_("Inclusive: line prices already contain this tax."),
    )
    country = models.CharField(_("country"), max_length=2, blank=True)
    # EN 16931 VAT category (S standard, Z zero, E exempt, AE reverse charge, ...).
    category = models.CharField(_("VAT category"), max_length=2, default="S")
    active = models.BooleanField(_("active"), default=True)

    class Meta:
        verbose_name = _("tax rate")
        verbose_name_plural = _("tax rates")
        ordering = ["display_name", "percentage"]

    def __str__(self):
        kind = _("incl.") if self.inclusive else _("excl.")
        return f"{self.display_name} {self.percentage.normalize()}% ({kind})"


class Invoice(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        OPEN = "open", _("Open")
        PAID = "paid", _("Paid")
        VOID = "void", _("Void")
        UNCOLLECTIBLE = "uncollectible", _("Uncollectible")

    class CollectionMethod(models.TextChoices):
        CHARGE_AUTOMATICALLY = "charge_automatically", _("Charge automatically")
        SEND_INVOICE = "send_invoice", _("Send invoice")

    class BillingReason(models.TextChoices):  # Stripe's values
        SUBSCRIPTION_CREATE = "subscription_create", _("Subscription created")
        SUBSCRIPTION_CYCLE = "subscription_cycle", _("Subscription renewal")
        SUBSCRIPTION_UPDATE = "subscription_update", _("Subscription change")
        MANUAL = "manual", _("Manual")

    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        on_delete=models.PROTECT,
        related_name="invoices",
        db_index=False,  # invoice_customer_list_idx serves lookups by customer
    )
    # The customer's test clock, copied when the row is written (a customer's clock is
    # set when it is created and never changes): a clock finds its next due moment in its
    # own partial indexes, without joining every row to its customer (automations.clocks).
    test_clock = models.ForeignKey(
        "customers.TestClock", verbose_name=_("test clock"), null=True, blank=True,
        editable=False, on_delete=models.SET_NULL, related_name="+", db_index=False,
    )
    status = models.CharField(
        _("status"), max_length=16, choices=Status.choices, default=Status.DRAFT, editable=False
    )
    # Charged instead of the customer's default (Stripe's invoice.default_payment_method):
    # a subscription's invoices carry the subscription's. Payment methods are detached,
    # never deleted, so no index serves SET_NULL.
    default_payment_method = models.ForeignKey(
        "customers.PaymentMethod", verbose_name=_("default payment method"), null=True,
        blank=True, editable=False, on_delete=models.SET_NULL, related_name="+",
        db_index=False,
    )
    # NULL until finalized: drafts have no number, and unique ignores NULLs.
    number = models.CharField(  # noqa: DJ001
        _("number"), max_length=32, unique=True, null=True, editable=False
    )
    currency = models.CharField(_("currency"), max_length=3, editable=False)
    collection_method = models.CharField(
        _("collection method"),
        max_length=24,
        choices=CollectionMethod.choices,
        default=CollectionMethod.SEND_INVOICE,
    )
    due_date = models.DateField(_("due date"), null=True, blank=True)
    days_until_due = models.PositiveSmallIntegerField(
        _("days until due"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(365)],
        help_text=_("Used to set the due date at finalization when no due date is given."),
    )
    auto_advance = models.BooleanField(
        _("automatic collection"),
        default=True,
        help_text=_("Finalize, collect, retry and remind automatically."),
    )
    # The "next action at" of auto-finalization: the sweep picks drafts due by this time.
    automatically_finalizes_at = models.DateTimeField(
        _("finalizes automatically at"), null=True, blank=True, editable=False
    )
    description = models.TextField(_("memo"), blank=True)
    footer = models.TextField(_("footer"), blank=True)
    metadata = models.JSONField(_("metadata"), default=dict, blank=True)
    discount_percent = models.DecimalField(
        _("invoice discount (%)"),
        max_digits=7,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    discount_amount = models.BigIntegerField(
        _("invoice discount (minor units)"),
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_AMOUNT)],
    )

    # Totals, all in minor units of `currency`, computed by invoices.totals only.
    subtotal = models.BigIntegerField(_("subtotal"), default=0, editable=False)
    total_discount_amount = models.BigIntegerField(_("discounts"), default=0, editable=False)
    total_excluding_tax = models.BigIntegerField(
        _("total excluding tax"), default=0, editable=False
    )
    tax = models.BigIntegerField(_("tax"), default=0, editable=False)
    total = models.BigIntegerField(_("total"), default=0, editable=False)
    tax_breakdown = models.JSONField(_("tax breakdown"), default=list, editable=False)
    starting_balance = models.BigIntegerField(_("starting balance"), default=0, editable=False)
    ending_balance = models.BigIntegerField(_("ending balance"), null=True, editable=False)
    pre_payment_credit_notes_amount = models.BigIntegerField(default=0, editable=False)
    post_payment_credit_notes_amount = models.BigIntegerField(default=0, editable=False)
    amount_due = models.BigIntegerField(_("amount due"), default=0, editable=False)
    amount_paid = models.BigIntegerField(_("amount paid"), default=0, editable=False)
    amount_remaining = models.BigIntegerField(_("amount remaining"), default=0, editable=False)

    # Collection, as Stripe keeps them (written by the collection engine).
    attempt_count = models.PositiveIntegerField(_("attempts"), default=0, editable=False)
    next_payment_attempt = models.DateTimeField(
        _("next payment attempt"), null=True, blank=True, editable=False
    )
    last_payment_error = models.CharField(
        _("last payment error"), max_length=300, blank=True, editable=False
    )
    last_decline_code = models.CharField(
        _("last decline code"), max_length=64, blank=True, editable=False
    )
    # Why the next attempt is at that time (Smart Retries or the fixed schedule say why).
    next_payment_attempt_reason = models.CharField(
        _("why then"), max_length=300, blank=True, editable=False
    )
    # Smart Retries' chance that the next attempt succeeds, per mille (None: no estimate).
    next_payment_attempt_chance = models.PositiveSmallIntegerField(
        _("expected chance (‰)"), null=True, blank=True, editable=False
    )
    # How Smart Retries planned it, kept on the attempt to recalibrate their chances on
    # what they stated whichever worker planned it: the model's log-odds before
    # recalibration, and whether they moved it from the fixed schedule's time.
    next_payment_attempt_log_odds = models.FloatField(null=True, blank=True, editable=False)
    next_payment_attempt_moved = models.BooleanField(null=True, blank=True, editable=False)
    # Automatic collection waits for the customer: a hard decline (a new payment method
    # resumes it), an authentication only the customer can give, or no payment method.
    payment_hold = models.CharField(
        _("collection on hold"), max_length=20, blank=True, editable=False,
        choices=[
            ("hard_decline", _("Hard decline: waiting for a new payment method")),
            ("requires_action", _("Waiting for the customer to authenticate")),
            ("no_payment_method", _("No payment method")),
            ("gateway_review", _("A payment held for review: staff decide")),
        ],
    )
    # The moment the invoice is (or will be) past due: the end of its due date in the
    # customer's time zone, or its first failed automatic payment, whichever is first.
    past_due_at = models.DateTimeField(_("past due since"), null=True, editable=False)

    # Billing details snapshotted at finalization.
    customer_details = models.JSONField(_("billing details"), default=dict, editable=False)
    hosted_token_salt = models.CharField(max_length=64, blank=True, editable=False)
    hosted_token_hash = models.CharField(max_length=64, blank=True, editable=False)
    # When the current link was issued by a rotation; NULL means at finalization.
    hosted_token_issued_at = models.DateTimeField(
        _("invoice page link issued at"), null=True, blank=True, editable=False
    )

    from_invoice = models.ForeignKey(
        "self",
        verbose_name=_("revision of"),
        null=True,
        blank=True,
        editable=False,
        on_delete=models.PROTECT,
        related_name="revisions",
        db_index=False,  # invoice_from_invoice_idx: revisions only
    )

    # The subscription this invoice bills (subscriptions.Subscription's id): a plain
    # column, not a foreign key, because invoices sits below subscriptions and never
    # depends on it (not even in migrations).
    subscription_id = models.BigIntegerField(
        _("subscription"), null=True, blank=True, editable=False
    )
    billing_reason = models.CharField(
        _("billing reason"), max_length=24, choices=BillingReason.choices,
        default=BillingReason.MANUAL, db_default=BillingReason.MANUAL, editable=False,
    )

    created_at = models.DateTimeField(_("created at"), editable=False)
    finalized_at = models.DateTimeField(_("finalized at"), null=True, editable=False)
    paid_at = models.DateTimeField(_("paid at"), null=True, editable=False)
    voided_at = models.DateTimeField(_("voided at"), null=True, editable=False)
    marked_uncollectible_at = models.DateTimeField(
        _("marked uncollectible at"), null=True, editable=False
    )

    class Meta:
        verbose_name = _("invoice")
        verbose_name_plural = _("invoices")
        ordering = ["-created_at", "-id"]
        indexes = [
            # The list's order itself, and its filters on currency or collection method
            # alone, are served on PostgreSQL by invoice_list_idx (migration 0010,
            # carrying the filtered columns), and the open invoices' (filtered, searched,
            # or by due date) by invoice_open_list_idx (0013). Every index costs every
            # status change.
            models.Index(
                fields=["status", "-created_at", "-id"], name="invoice_status_created_idx"
            ),
            # A customer's invoices in list order, id included: the changelist's pages of
            # a segment or a customer search, and the customer's page, read the index alone.
            models.Index(
                fields=["customer", "-created_at", "-id"], name="invoice_customer_list_idx"
            ),
            # Few invoices are revisions: the others, left out, cost no index entry when
            # their status changes.
            models.Index(
                fields=["from_invoice"], name="invoice_from_invoice_idx",
                condition=Q(from_invoice__isnull=False),
            ),
            # The combined filter (open + EUR + send_invoice): counted, and paged deep in the
            # list's order, from the index alone (without it: 350-430 ms a page, measured).
            models.Index(
                fields=["status", "collection_method", "currency", "-created_at", "-id"],
                name="invoice_status_method_cur_idx",
            ),
            models.Index(fields=["hosted_token_hash"], name="invoice_hosted_token_idx"),
            # Collection's "next action at" columns: a sweep with nothing due reads nothing.
            models.Index(
                fields=["next_payment_attempt"],
                name="invoice_next_attempt_idx",
                condition=Q(
                    status__in=["open", "uncollectible"], next_payment_attempt__isnull=False
                ),
            ),
            # Carries what the dashboard sums (0017): what is overdue, and what falls due
            # today and is not yet past due, read from the index alone.
            models.Index(
                fields=["past_due_at"], name="invoice_past_due_idx", condition=Q(status="open"),
                include=["due_date", "currency", "amount_remaining"],
            ),
            models.Index(
                fields=["automatically_finalizes_at"],
                name="invoice_autofinalize_idx",
                condition=Q(status="draft", auto_advance=True),
            ),
            # A subscription's invoices; one-off invoices (most) cost no entry.
            models.Index(
                fields=["subscription_id", "-created_at"], name="invoice_subscription_idx",
                condition=Q(subscription_id__isnull=False),
            ),
            # The same columns for the test clocks (a few customers; no entry for others).
            models.Index(
                fields=["test_clock", "automatically_finalizes_at"],
                name="invoice_clock_finalize_idx",
                condition=Q(status="draft", auto_advance=True, test_clock__isnull=False),
            ),
            models.Index(
                fields=["test_clock", "next_payment_attempt"],
                name="invoice_clock_attempt_idx",
                condition=Q(status="open", next_payment_attempt__isnull=False,
                            test_clock__isnull=False),
            ),
            models.Index(
                fields=["test_clock", "past_due_at"],
                name="invoice_clock_past_due_idx",
                condition=Q(status="open", past_due_at__isnull=False, test_clock__isnull=False),
            ),
            # A clock's open invoices waiting for their customer (a simulation's customers
            # act on them after each collection that held some): few, and without the
            # entries of their earlier versions (14 ms a read at 2,000 customers through
            # the status index in a simulation's uncommitted transaction).
            models.Index(
                fields=["test_clock", "-created_at", "-id"],  # in the list's order
                name="invoice_clock_held_idx",
                condition=Q(status="open", test_clock__isnull=False,
                            payment_hold__in=["hard_decline", "requires_action",
                                              "no_payment_method"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status="draft") | Q(number__isnull=False),
                name="invoice_finalized_has_number",
            ),
            models.CheckConstraint(
                condition=Q(amount_paid__gte=0) & Q(amount_remaining__gte=0),
                name="invoice_amounts_not_negative",
            ),
        ]

    def __str__(self):
        return self.number or str(_("Draft %(id)s") % {"id": self.pk})

    @property
    def is_draft(self) -> bool:
        return self.status == self.Status.DRAFT

    def is_past_due(self, now) -> bool:
        """Not a status: open and either past its due date or its automatic payment failed."""
        return (
            self.status == self.Status.OPEN
            and self.past_due_at is not None
            and self.past_due_at <= now
        )


class InvoiceLine(models.Model):
    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    position = models.PositiveSmallIntegerField(_("position"), default=0)
    description = models.CharField(_("description"), max_length=500)
    quantity = models.PositiveIntegerField(
        _("quantity"), default=1, validators=[MinValueValidator(1), MaxValueValidator(MAX_QUANTITY)]
    )
    unit_amount = models.BigIntegerField(
        _("unit amount (minor units)"),
        # Negative only on a proration credit (clean and the constraint say so).
        validators=[MinValueValidator(-MAX_AMOUNT), MaxValueValidator(MAX_AMOUNT)],
    )
    # Stripe's `proration`: a line for part of a period after a subscription changed. A
    # proration credit (the unused time of the old plan) is the one negative line.
    proration = models.BooleanField(_("proration"), default=False, editable=False)
    period_start = models.DateField(_("period start"), null=True, blank=True)
    period_end = models.DateField(_("period end"), null=True, blank=True)
    tax_rates = models.ManyToManyField(TaxRate, verbose_name=_("tax rates"), blank=True)
    discount_percent = models.DecimalField(
        _("discount (%)"),
        max_digits=7,
        decimal_places=4,
        default=Decimal(0),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
    )
    discount_amount = models.BigIntegerField(
        _("discount (minor units)"),
        default=0,
        validators=[MinValueValidator(0), MaxValueValidator(MAX_AMOUNT)],
    )
    # Computed by invoices.totals, minor units.
    amount = models.BigIntegerField(_("amount"), default=0, editable=False)
    discount_total = models.BigIntegerField(_("discounts"), default=0, editable=False)
    amount_excluding_tax = models.BigIntegerField(_("amount excl. tax"), default=0, editable=False)
    tax_amount = models.BigIntegerField(_("tax"), default=0, editable=False)

    class Meta:
        verbose_name = _("line")
        verbose_name_plural = _("lines")
        ordering = ["position", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(unit_amount__gte=0) | Q(proration=True, discount_amount=0,
                                                   discount_percent=0),
                name="invoice_line_negative_only_proration",
            ),
        ]

    def __str__(self):
        return self.description

    def clean(self):
        if self.unit_amount is not None and self.unit_amount < 0:
            if not self.proration:
                raise ValidationError({"unit_amount": _(
                    "Amounts cannot be negative; use a credit note to give money back."
                )})
            if self.discount_amount or self.discount_percent:
                raise ValidationError(_("A proration credit takes no discount of its own."))


class InvoiceNumberSequence(models.Model):
    """The next number of one sequence (a customer's prefix, or the account's)."""

    key = models.CharField(max_length=16, primary_key=True)
    next_number = models.PositiveIntegerField(default=1)

    def __str__(self):
        return f"{self.key}: next {self.next_number}"


class Payment(models.Model):
    """Money received for an invoice."""

    class Method(models.TextChoices):
        BANK_TRANSFER = "bank_transfer", _("Bank transfer")
        CHEQUE = "cheque", _("Cheque")
        CASH = "cash", _("Cash")
        CARD = "card", _("Card")
        SEPA_DEBIT = "sepa_debit", _("SEPA Direct Debit")
        OTHER = "other", _("Other")

    invoice = models.ForeignKey(
        Invoice, verbose_name=_("invoice"), on_delete=models.PROTECT, related_name="payments"
    )
    amount = models.BigIntegerField(_("amount (minor units)"), validators=[MinValueValidator(1)])
    currency = models.CharField(_("currency"), max_length=3)
    method = models.CharField(_("method"), max_length=20, choices=Method.choices)
    reference = models.CharField(_("reference"), max_length=100, blank=True)
    received_at = models.DateTimeField(_("received at"))
    recorded_by = models.CharField(_("recorded by"), max_length=150)
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        verbose_name = _("payment")
        verbose_name_plural = _("payments")
        ordering = ["-received_at", "-id"]

    def __str__(self):
        return f"{format_money_here(self.amount, self.currency)} ({self.get_method_display()})"


class PaymentAttempt(models.Model):
    """One try to charge a payment method for an invoice.

    The row and its idempotency key are committed before the gateway is called, so a
    crash between the call and the write leaves a `pending` row that the reconciliation
    sweep settles with what the gateway knows (gateway.retrieve): never a second charge.
    """

    class Status(models.TextChoices):
        PENDING = "pending", _("Pending")  # written, gateway not answered yet
        PROCESSING = "processing", _("Processing")
        SUCCEEDED = "succeeded", _("Succeeded")
        FAILED = "failed", _("Failed")
        REQUIRES_ACTION = "requires_action", _("Requires action")
        # The gateway's answer did not match the request (amount, currency, charge id,
        # metadata): nothing was booked, and the invoice is not charged again until
        # staff decide (invoices.review).
        HELD = "held", _("Held for review")

    class Source(models.TextChoices):
        AUTOMATIC = "automatic", _("Automatic collection")
        CUSTOMER = "customer", _("Customer (hosted page)")
        STAFF = "staff", _("Staff")

    FINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.REQUIRES_ACTION})

    invoice = models.ForeignKey(
        Invoice, verbose_name=_("invoice"), on_delete=models.PROTECT,
        related_name="payment_attempts",
    )
    customer = models.ForeignKey(
        "customers.Customer", verbose_name=_("customer"), on_delete=models.PROTECT,
        related_name="payment_attempts",
    )
    # The customer's test clock, copied when the row is written (a customer's clock is
    # set when it is created and never changes): a clock finds its next due moment in its
    # own partial indexes, without joining every row to its customer (automations.clocks).
    test_clock = models.ForeignKey(
        "customers.TestClock", verbose_name=_("test clock"), null=True, blank=True,
        editable=False, on_delete=models.SET_NULL, related_name="+", db_index=False,
    )
    payment_method = models.ForeignKey(
        "customers.PaymentMethod", verbose_name=_("payment method"), null=True, blank=True,
        on_delete=models.PROTECT, related_name="attempts",
    )
    # What the gateway was asked to charge (the payment method's reference, or a one-off
    # card token typed on the hosted page), and how a person recognises it.
    gateway_token = models.CharField(_("gateway payment method"), max_length=255)
    method_label = models.CharField(_("charged"), max_length=60, blank=True)
    source = models.CharField(_("source"), max_length=10, choices=Source.choices)
    amount = models.BigIntegerField(_("amount (minor units)"), validators=[MinValueValidator(1)])
    currency = models.CharField(_("currency"), max_length=3)
    idempotency_key = models.CharField(_("idempotency key"), max_length=255, unique=True)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    gateway_reference = models.CharField(_("gateway reference"), max_length=255, blank=True)
    amount_received = models.BigIntegerField(_("received (minor units)"), default=0)
    decline_code = models.CharField(_("decline code"), max_length=64, blank=True)
    failure_message = models.CharField(_("failure message"), max_length=300, blank=True)
    advice = models.CharField(_("advice"), max_length=32, blank=True)
    hard_decline = models.BooleanField(_("hard decline"), default=False)
    action_url = models.URLField(_("action link"), max_length=500, blank=True)
    # The decline this attempt retries ("" for a first attempt): what Smart Retries learn.
    retry_of_decline_code = models.CharField(_("retry of"), max_length=64, blank=True)
    # The chance Smart Retries gave this retry, per mille: calibration is measured on it.
    predicted_chance = models.PositiveSmallIntegerField(
        _("expected chance (‰)"), null=True, blank=True
    )
    # The model's log-odds for it before recalibration, and whether Smart Retries moved
    # it from the fixed schedule's time (Invoice.next_payment_attempt_log_odds, _moved).
    predicted_log_odds = models.FloatField(null=True, blank=True, editable=False)
    planner_moved = models.BooleanField(null=True, blank=True, editable=False)
    # The card's funding as the gateway reported it (credit, debit, prepaid, unknown).
    card_funding = models.CharField(_("card funding"), max_length=10, blank=True)
    created_at = models.DateTimeField(_("created at"))
    completed_at = models.DateTimeField(_("completed at"), null=True, blank=True)
    duration_ms = models.PositiveIntegerField(_("gateway time (ms)"), null=True, blank=True)
    # When to ask the gateway again about a processing charge.
    check_at = models.DateTimeField(_("next check"), null=True, blank=True)
    payment = models.OneToOneField(
        Payment, verbose_name=_("payment"), null=True, blank=True, on_delete=models.PROTECT,
        related_name="attempt",
    )

    class Meta:
        verbose_name = _("payment attempt")
        verbose_name_plural = _("payment attempts")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["invoice", "-created_at"], name="attempt_invoice_idx"),
            # The card network cap: attempts on one payment method in the last 30 days.
            models.Index(fields=["payment_method", "created_at"], name="attempt_method_idx"),
            # Due work of the settle and reconciliation sweeps.
            models.Index(
                fields=["check_at"], name="attempt_check_idx",
                condition=Q(status__in=["pending", "processing"]),
            ),
            models.Index(
                fields=["test_clock", "check_at"], name="attempt_clock_check_idx",
                condition=Q(status__in=["pending", "processing"], test_clock__isnull=False),
            ),
            # Successful retries of a declined payment, by time: what the dashboard shows
            # collection recovered (a small part of all attempts).
            models.Index(
                fields=["created_at"], name="attempt_recovered_idx",
                condition=Q(status="succeeded") & ~Q(retry_of_decline_code=""),
            ),
        ]
        constraints = [
            # At most one attempt in flight per invoice: two workers cannot both charge it.
            # One held for review counts: nothing charges the invoice until staff decide.
            models.UniqueConstraint(
                fields=["invoice"], name="attempt_one_in_flight",
                condition=Q(status__in=["pending", "processing", "held"]),
            ),
        ]

    def __str__(self):
        return f"{self.get_status_display()} {format_money_here(self.amount, self.currency)}"


class CreditNote(models.Model):
    class Status(models.TextChoices):
        ISSUED = "issued", _("Issued")
        VOID = "void", _("Void")

    class Type(models.TextChoices):
        PRE_PAYMENT = "pre_payment", _("Pre-payment")
        POST_PAYMENT = "post_payment", _("Post-payment")
        MIXED = "mixed", _("Mixed")

    class Reason(models.TextChoices):
        DUPLICATE = "duplicate", _("Duplicate")
        FRAUDULENT = "fraudulent", _("Fraudulent")
        ORDER_CHANGE = "order_change", _("Order change")
        PRODUCT_UNSATISFACTORY = "product_unsatisfactory", _("Product unsatisfactory")

    invoice = models.ForeignKey(
        Invoice, verbose_name=_("invoice"), on_delete=models.PROTECT, related_name="credit_notes"
    )
    number = models.CharField(_("number"), max_length=40, unique=True)
    status = models.CharField(
        _("status"), max_length=8, choices=Status.choices, default=Status.ISSUED
    )
    type = models.CharField(_("type"), max_length=16, choices=Type.choices)
    reason = models.CharField(_("reason"), max_length=32, choices=Reason.choices, blank=True)
    memo = models.TextField(_("memo"), blank=True)
    currency = models.CharField(_("currency"), max_length=3)
    # Minor units. amount = pre_payment_amount + post_payment_amount, and
    # post_payment_amount = refund_amount + credit_amount + out_of_band_amount.
    amount = models.BigIntegerField(_("amount"))
    tax = models.BigIntegerField(_("of which tax"), default=0)
    pre_payment_amount = models.BigIntegerField(_("pre-payment part"), default=0)
    post_payment_amount = models.BigIntegerField(_("post-payment part"), default=0)
    refund_amount = models.BigIntegerField(_("refunded"), default=0)
    credit_amount = models.BigIntegerField(_("credited to balance"), default=0)
    out_of_band_amount = models.BigIntegerField(_("credited outside the system"), default=0)
    created_at = models.DateTimeField(_("created at"))
    voided_at = models.DateTimeField(_("voided at"), null=True, blank=True)

    class Meta:
        verbose_name = _("credit note")
        verbose_name_plural = _("credit notes")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(
                    amount=models.F("pre_payment_amount") + models.F("post_payment_amount")
                ),
                name="credit_note_parts_add_up",
            ),
            models.CheckConstraint(
                condition=Q(
                    post_payment_amount=models.F("refund_amount")
                    + models.F("credit_amount")
                    + models.F("out_of_band_amount")
                ),
                name="credit_note_split_adds_up",
            ),
        ]

    def __str__(self):
        return self.number


class CreditNoteLine(models.Model):
    credit_note = models.ForeignKey(CreditNote, on_delete=models.CASCADE, related_name="lines")
    invoice_line = models.ForeignKey(
        InvoiceLine,
        verbose_name=_("invoice line"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="credit_note_lines",
    )
    description = models.CharField(_("description"), max_length=500)
    # Tax-inclusive amount credited for this line, minor units; `tax` is its tax part.
    amount = models.BigIntegerField(_("amount"), validators=[MinValueValidator(1)])
    tax = models.BigIntegerField(_("of which tax"), default=0)

    class Meta:
        verbose_name = _("credit note line")
        verbose_name_plural = _("credit note lines")
        ordering = ["id"]

    def __str__(self):
        return self.description


class Event(models.Model):
    """Append-only: every state change and outbound action, with who did it."""

    class ActorKind(models.TextChoices):
        STAFF = "staff", _("Staff")
        SYSTEM = "system", _("System")
        CUSTOMER = "customer", _("Customer")

    type = models.CharField(_("type"), max_length=64)  # event_type_idx
    created_at = models.DateTimeField(_("at"))
    actor_kind = models.CharField(_("actor"), max_length=10, choices=ActorKind.choices)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        verbose_name=_("staff user"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,  # event_actor_user_idx, partial: most events have no staff user
    )
    actor_label = models.CharField(_("actor name"), max_length=150, blank=True)
    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,  # event_customer_idx (customer, created_at) serves it
    )
    invoice = models.ForeignKey(
        Invoice,
        verbose_name=_("invoice"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,  # event_invoice_idx (invoice, created_at) serves it
    )
    credit_note = models.ForeignKey(
        CreditNote,
        verbose_name=_("credit note"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="events",
        db_index=False,  # event_credit_note_idx, partial
    )
    # The subscription the event is about (subscriptions.Subscription's id; a plain
    # column: invoices never depends on subscriptions).
    subscription_id = models.BigIntegerField(_("subscription"), null=True, blank=True)
    data = models.JSONField(_("data"), default=dict)

    class Meta:
        verbose_name = _("event")
        verbose_name_plural = _("events")
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["invoice", "created_at"], name="event_invoice_idx"),
            models.Index(fields=["customer", "created_at"], name="event_customer_idx"),
            # The digest and Smart Retries read events by type over a time range. No
            # index on `type` alone: Django would add a LIKE twin nobody uses.
            models.Index(fields=["type", "created_at"], name="event_type_idx"),
            # Every event row pays for each index it enters; most rows have neither.
            models.Index(
                fields=["actor_user"], name="event_actor_user_idx",
                condition=models.Q(actor_user__isnull=False),
            ),
            models.Index(
                fields=["credit_note"], name="event_credit_note_idx",
                condition=models.Q(credit_note__isnull=False),
            ),
            models.Index(
                fields=["subscription_id", "created_at"], name="event_subscription_idx",
                condition=models.Q(subscription_id__isnull=False),
            ),
        ]

    def __str__(self):
        return f"{self.type} at {self.created_at:%Y-%m-%d %H:%M}"


from .documents.models import Branding, Document  # noqa: E402,F401
from .gateways.models import SimulatedCharge  # noqa: E402,F401


class RateLimitCounter(models.Model):
    """The invoice page's rate-limit counters when the cache cannot count (Redis down):
    one row per limit, subject and window, so the limits keep holding (a public page that
    charges cards is where card testing happens). Expired rows are removed as new ones
    are written."""

    key = models.CharField(max_length=200, unique=True)
    count = models.PositiveIntegerField(default=0)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self):
        return f"{self.key}: {self.count}"
