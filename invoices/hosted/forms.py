"""The invoice page's forms. Card details are read, turned into the gateway's token and
forgotten: never stored, never echoed back into a page (the template writes the inputs
without values), never logged (the views mark them sensitive for error reports)."""

import re
import secrets
from datetime import date

from django import forms
from django.core.validators import RegexValidator
from django.utils.translation import gettext_lazy as _

from ..gateways.simulated import SimulatedCard, simulated_card_for_number
from ..models import Invoice

CARD_FIELDS = ("number", "expiry", "cvc")
CARD_AUTOCOMPLETE = (("number", "cc-number"), ("expiry", "cc-exp"), ("cvc", "cc-csc"))
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
CARD_DIGITS_RE = re.compile(r"^[0-9]{12,19}$")
EXPIRY_RE = re.compile(r"^(?P<month>[0-9]{1,2})\s*/\s*(?P<year>[0-9]{2}|[0-9]{4})$")
CVC_RE = re.compile(r"^[0-9]{3,4}$")


def nonce_new() -> str:
    """One per rendered pay form: a double click or a reload sends the same one back,
    and the payment attempt is keyed on it."""
    return secrets.token_urlsafe(16)


class SimulatedCardForm(forms.Form):
    """A card typed by the customer, for the simulated gateway: its documented test
    numbers (docs/gateways.md) become the card's token. A real gateway takes card
    details in its own hosted fields and never lets them reach this server."""

    # Rendered by templates/hosted/_card_fields.html, which never puts a value back.
    number = forms.CharField(label=_("Card number"), max_length=40)
    expiry = forms.CharField(label=_("Expiry date (MM/YY)"), max_length=9)
    cvc = forms.CharField(label=_("Security code (CVC)"), max_length=4)

    id_format = "method-%s"  # ids unique on a page that shows several card forms

    def __init__(self, *args, today: date, **kwargs):
        kwargs.setdefault("auto_id", self.id_format)
        super().__init__(*args, **kwargs)
        self.today = today

    def card_fields(self) -> list[tuple]:
        """(bound field, autocomplete token, max length) for the page's card inputs."""
        return [(self[name], autocomplete, self.fields[name].max_length)
                for name, autocomplete in CARD_AUTOCOMPLETE]

    def clean_number(self) -> SimulatedCard:
        digits = re.sub(r"[\s-]", "", self.cleaned_data["number"])
        if not CARD_DIGITS_RE.match(digits):
            raise forms.ValidationError(_("Enter the card number: 12 to 19 digits."))
        try:
            return simulated_card_for_number(digits)
        except ValueError:
            raise forms.ValidationError(
                _("This is not one of the test card numbers of this demonstration gateway.")
            ) from None

    def clean_expiry(self) -> tuple[int, int]:
        match = EXPIRY_RE.match(self.cleaned_data["expiry"].strip())
        month = int(match["month"]) if match else 0
        if not 1 <= month <= 12:
            raise forms.ValidationError(_("Enter the expiry date as MM/YY, for example 04/30."))
        year = int(match["year"])
        year += 2000 if year < 100 else 0
        if (year, month) < (self.today.year, self.today.month):
            raise forms.ValidationError(_("This card has expired."))
        return month, year

    def clean_cvc(self) -> str:
        if not CVC_RE.match(self.cleaned_data["cvc"].strip()):
            raise forms.ValidationError(_("Enter the 3 or 4 digit security code."))
        return "checked"  # nothing downstream needs it; not kept


class PaymentConfirmationForm(forms.Form):
    """What every pay button sends: the amount the customer saw, and the form's nonce."""

    nonce = forms.CharField(
        widget=forms.HiddenInput,
        validators=[RegexValidator(NONCE_RE)],
        error_messages={"required": _("This form is out of date; please try again.")},
    )
    amount = forms.IntegerField(
        widget=forms.HiddenInput,
        error_messages={
            "required": _("The amount to pay is missing; please try again."),
            "invalid": _("The amount to pay is not valid; please try again."),
        },
    )

    id_format = "saved-%s"

    def __init__(self, *args, invoice: Invoice, **kwargs):
        kwargs.setdefault("auto_id", self.id_format)
        super().__init__(*args, **kwargs)
        self.invoice = invoice
        self.fields["nonce"].validators[0].message = _(
            "This form is out of date; please try again."
        )

    def clean_amount(self) -> int:
        amount = self.cleaned_data["amount"]
        if amount != self.invoice.amount_remaining:
            raise forms.ValidationError(
                _("The amount due has changed since this page was loaded. Please check it "
                  "and pay again.")
            )
        return amount

    def hidden_errors(self) -> list[str]:
        return [error for name in ("nonce", "amount") for error in self.errors.get(name, [])]


class CardPaymentForm(PaymentConfirmationForm, SimulatedCardForm):
    """Pay with a card typed on the page."""

    id_format = "pay-%s"


class LinkRequestForm(forms.Form):
    email = forms.EmailField(
        label=_("Your email address"),
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email"}),
    )
