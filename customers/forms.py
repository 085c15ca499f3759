"""Admin forms for customers: they validate what a person typed; services do the writing."""

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _

from .errors import DomainError
from .fields import CountryField, MetadataField, TaxIdsField
from .models import Customer
from .money import to_minor
from .services import prefix_check_available


class CustomerForm(forms.ModelForm):
    country = CountryField(label=_("Country"))
    tax_ids = TaxIdsField(label=_("Tax ids"))
    metadata = MetadataField(
        label=_("Metadata"),
        help_text=_("Up to 50 keys of at most 40 characters each; values up to 500."),
    )

    class Meta:
        model = Customer
        fields = [
            "name", "email", "address_line1", "address_line2", "postal_code", "city", "state",
            "country", "tax_ids", "currency", "preferred_locale", "timezone", "segment",
            "metadata", "invoice_prefix", "test_clock",
        ]
        help_texts = {
            "invoice_prefix": _(
                "3 to 12 uppercase letters or digits. Leave blank to get one suggested from "
                "the name. A prefix is never used twice, even after a customer changes it."
            ),
            "timezone": _("An IANA time zone such as Europe/Paris or America/Sao_Paulo."),
        }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "invoice_prefix" in self.fields:
            self.fields["invoice_prefix"].required = False

    @property
    def is_new(self) -> bool:
        return self.instance.pk is None

    def clean_invoice_prefix(self):
        prefix = (self.cleaned_data.get("invoice_prefix") or "").strip()
        if self.is_new:
            return prefix and self._check_prefix(prefix)
        if not prefix:
            raise ValidationError(_("A customer keeps an invoice prefix; enter one."))
        if prefix == self.instance.invoice_prefix:
            return prefix
        return self._check_prefix(prefix)

    def _check_prefix(self, prefix: str) -> str:
        # A changed prefix must never have been used by anyone, this customer included:
        # an old prefix stays reserved so that old invoice numbers stay unambiguous.
        try:
            prefix_check_available(prefix)
        except DomainError as error:
            raise ValidationError(error.message) from None
        return prefix

    def clean_currency(self):
        currency = self.cleaned_data.get("currency")
        if self.is_new or currency == self.instance.currency:
            return currency
        if self.instance.balance_transactions.exists():
            raise ValidationError(
                _("The currency cannot change: this customer's balance already has transactions "
                  "in %(currency)s."),
                params={"currency": self.instance.currency},
            )
        return currency

    def clean_timezone(self):
        return (self.cleaned_data.get("timezone") or "").strip()


class BalanceAdjustForm(forms.Form):
    CREDIT = "credit"
    DEBIT = "debit"

    direction = forms.ChoiceField(
        label=_("Direction"),
        choices=[
            (CREDIT, _("Credit: the customer is owed this amount (lowers the next invoices)")),
            (DEBIT, _("Debit: the customer owes this amount (added to the next invoice)")),
        ],
        widget=forms.RadioSelect,
    )
    amount = forms.CharField(
        label=_("Amount"), max_length=32, help_text=_("In major units, e.g. 12.50.")
    )
    description = forms.CharField(label=_("Description"), max_length=300)

    def __init__(self, *args, customer: Customer, **kwargs):
        super().__init__(*args, **kwargs)
        self.customer = customer
        self.fields["amount"].help_text = _("In %(currency)s, e.g. 12.50.") % {
            "currency": customer.currency
        }

    def clean_amount(self):
        minor = to_minor(self.cleaned_data["amount"], self.customer.currency)
        if minor <= 0:
            raise ValidationError(
                _("Enter a positive amount, then choose credit or debit.")
            )
        return minor

    def signed_amount(self) -> int:
        """Minor units as the ledger wants them: negative is credit to the customer."""
        amount = self.cleaned_data["amount"]
        return -amount if self.cleaned_data["direction"] == self.CREDIT else amount

