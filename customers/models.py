import re
import zoneinfo
from functools import cache

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models
from django.utils.translation import gettext_lazy as _

from .money import format_money_here, validate_currency

LOCALES = [("en", _("English")), ("fr", _("French")), ("pt-BR", _("Portuguese (Brazil)"))]

PREFIX_PATTERN = re.compile(r"^[A-Z0-9]{3,12}$")
validate_prefix = RegexValidator(
    PREFIX_PATTERN, _("Use 3 to 12 uppercase letters or digits, e.g. ACME or ACME01.")
)


@cache
def known_timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def validate_timezone(name: str) -> None:
    if name not in known_timezones():
        raise ValidationError(_("%(name)s is not a known time zone."), params={"name": name})


def validate_tax_ids(value) -> None:
    ok = isinstance(value, list) and all(
        isinstance(t, dict) and isinstance(t.get("type"), str) and isinstance(t.get("value"), str)
        for t in value
    )
    if not ok:
        raise ValidationError(
            _('Tax ids are a list such as [{"type": "eu_vat", "value": "FR12345678901"}].')
        )


def validate_metadata(value) -> None:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationError(_('Metadata is an object such as {"plan": "gold"}.'))


class TestClock(models.Model):
    """A simulated time that customers can be attached to (Stripe's test clocks)."""

    __test__ = False  # not a pytest test class

    name = models.CharField(_("name"), max_length=100)
    frozen_time = models.DateTimeField(_("frozen time"))
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("test clock")
        verbose_name_plural = _("test clocks")
        ordering = ["-created_at"]

    def __str__(self):
        return self.name


class Customer(models.Model):
    name = models.CharField(_("name"), max_length=200)
    email = models.EmailField(_("email"), blank=True)
    address_line1 = models.CharField(_("address line 1"), max_length=200, blank=True)
    address_line2 = models.CharField(_("address line 2"), max_length=200, blank=True)
    postal_code = models.CharField(_("postal code"), max_length=20, blank=True)
    city = models.CharField(_("city"), max_length=100, blank=True)
    state = models.CharField(_("state or region"), max_length=100, blank=True)
    country = models.CharField(_("country (ISO 3166 code)"), max_length=2, blank=True)
    tax_ids = models.JSONField(
        _("tax ids"), default=list, blank=True, validators=[validate_tax_ids]
    )
    currency = models.CharField(
        _("currency"), max_length=3, default="EUR", validators=[validate_currency]
    )
    preferred_locale = models.CharField(
        _("preferred locale"), max_length=5, choices=LOCALES, default="en"
    )
    timezone = models.CharField(
        _("time zone"), max_length=64, default="UTC", validators=[validate_timezone]
    )
    segment = models.CharField(_("segment"), max_length=50, blank=True, db_index=True)
    metadata = models.JSONField(
        _("metadata"), default=dict, blank=True, validators=[validate_metadata]
    )
    invoice_prefix = models.CharField(
        _("invoice prefix"), max_length=12, unique=True, validators=[validate_prefix]
    )
    test_clock = models.ForeignKey(
        TestClock,
        verbose_name=_("test clock"),
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="customers",
    )
    default_payment_method = models.ForeignKey(
        "PaymentMethod",
        verbose_name=_("default payment method"),
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
    )
    # Minor units of `currency`; negative is credit owed to the customer. A cache of the
    # sum of the ledger, written only by customers.ledger in the same transaction.
    balance = models.BigIntegerField(_("balance (minor units)"), default=0, editable=False)
    created_at = models.DateTimeField(_("created at"), auto_now_add=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["name"]
        indexes = [models.Index(fields=["email"]), models.Index(fields=["name"])]

    def __str__(self):
        return self.name

    def billing_details(self) -> dict:
        """What an invoice snapshots at finalization."""
        return {
            "name": self.name,
            "email": self.email,
            "address": {
                "line1": self.address_line1,
                "line2": self.address_line2,
                "postal_code": self.postal_code,
                "city": self.city,
                "state": self.state,
                "country": self.country,
            },
            "tax_ids": self.tax_ids,
            "locale": self.preferred_locale,
            "timezone": self.timezone,
        }


class PaymentMethod(models.Model):
    """A way to charge a customer. Only the gateway's reference is kept (a Stripe pm_ id,
    a simulated card token) with what a person needs to recognise it: never a card
    number."""

    class Type(models.TextChoices):
        CARD = "card", _("Card")
        SEPA_DEBIT = "sepa_debit", _("SEPA Direct Debit")
        BANK_TRANSFER = "bank_transfer", _("Bank transfer (manual)")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        DETACHED = "detached", _("Detached")

    # Types the system can charge by itself; a bank transfer is paid by the customer.
    CHARGEABLE = frozenset({Type.CARD, Type.SEPA_DEBIT})

    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        on_delete=models.PROTECT,
        related_name="payment_methods",
    )
    type = models.CharField(_("type"), max_length=16, choices=Type.choices)
    brand = models.CharField(_("brand"), max_length=20, blank=True)
    last4 = models.CharField(_("last 4"), max_length=4, blank=True)
    exp_month = models.PositiveSmallIntegerField(_("expiry month"), null=True, blank=True)
    exp_year = models.PositiveSmallIntegerField(_("expiry year"), null=True, blank=True)
    gateway_reference = models.CharField(_("gateway reference"), max_length=255, blank=True)
    status = models.CharField(
        _("status"), max_length=10, choices=Status.choices, default=Status.ACTIVE
    )
    created_at = models.DateTimeField(_("created at"))
    # A hard decline (stolen, lost, fraudulent, incorrect number...) makes the method
    # unusable: it is never charged again until the customer or staff re-enable it.
    unusable_code = models.CharField(_("hard decline"), max_length=64, blank=True)
    unusable_at = models.DateTimeField(_("unusable since"), null=True, blank=True)

    class Meta:
        verbose_name = _("payment method")
        verbose_name_plural = _("payment methods")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "status"], name="paymentmethod_customer_idx")]

    def __str__(self):
        if self.type == self.Type.CARD:
            return f"{self.brand or _('card')} •••• {self.last4}".strip()
        if self.type == self.Type.SEPA_DEBIT:
            return f"SEPA •••• {self.last4}"
        return str(self.get_type_display())

    @property
    def chargeable(self) -> bool:
        return self.type in self.CHARGEABLE and self.status == self.Status.ACTIVE

    @property
    def usable(self) -> bool:
        """Chargeable and not marked unusable by a hard decline."""
        return self.chargeable and not self.unusable_code

    def expired(self, today) -> bool:
        if not (self.exp_year and self.exp_month):
            return False
        return (self.exp_year, self.exp_month) < (today.year, today.month)


class InvoicePrefix(models.Model):
    """Every prefix any customer ever had: a prefix is never handed out twice."""

    prefix = models.CharField(_("prefix"), max_length=12, primary_key=True)
    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        on_delete=models.PROTECT,
        related_name="prefix_history",
    )
    reserved_at = models.DateTimeField(_("reserved at"), auto_now_add=True)

    class Meta:
        verbose_name = _("invoice prefix")
        verbose_name_plural = _("invoice prefixes")

    def __str__(self):
        return self.prefix


class BalanceTransaction(models.Model):
    """One line of a customer's append-only balance ledger (Stripe's types)."""

    class Type(models.TextChoices):
        ADJUSTMENT = "adjustment", _("Adjustment")
        APPLIED_TO_INVOICE = "applied_to_invoice", _("Applied to invoice")
        UNAPPLIED_FROM_INVOICE = "unapplied_from_invoice", _("Unapplied from invoice")
        CREDIT_NOTE = "credit_note", _("Credit note")
        INVOICE_OVERPAID = "invoice_overpaid", _("Invoice overpaid")
        INITIAL = "initial", _("Initial balance")
        MIGRATION = "migration", _("Migration")

    customer = models.ForeignKey(
        Customer,
        verbose_name=_("customer"),
        on_delete=models.PROTECT,
        related_name="balance_transactions",
    )
    type = models.CharField(_("type"), max_length=32, choices=Type.choices)
    amount = models.BigIntegerField(_("amount (minor units)"))  # negative: credit
    currency = models.CharField(_("currency"), max_length=3)
    ending_balance = models.BigIntegerField(_("ending balance (minor units)"))
    description = models.CharField(_("description"), max_length=300, blank=True)
    # Document this line belongs to, e.g. an invoice or credit note number.
    reference = models.CharField(_("reference"), max_length=64, blank=True)
    actor = models.CharField(_("actor"), max_length=150)
    created_at = models.DateTimeField(_("created at"))

    class Meta:
        verbose_name = _("balance transaction")
        verbose_name_plural = _("balance transactions")
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["customer", "created_at"])]

    def __str__(self):
        return f"{self.get_type_display()} {format_money_here(self.amount, self.currency)}"
