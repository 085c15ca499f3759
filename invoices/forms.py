"""Admin forms for invoices: they turn what staff type into domain calls' arguments and
refuse bad input before anything is written (the domain checks again)."""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.errors import DomainError
from customers.money import format_money, to_minor

from .credit_notes import CreditLine
from .models import MAX_LINES, CreditNote, Invoice, InvoiceLine, Payment
from .services import line_validate


def _label(model, name):
    return model._meta.get_field(name).verbose_name


# --- invoice and lines --------------------------------------------------------------


class InvoiceAddForm(forms.ModelForm):
    """Creating a draft: the currency is the customer's; typing another one is refused."""

    invoice_currency = forms.CharField(
        label=gettext_lazy("Currency"), required=False, max_length=3,
        help_text=gettext_lazy("Leave blank: an invoice is in its customer's currency."),
    )

    class Meta:
        model = Invoice
        fields = [
            "customer", "collection_method", "due_date", "days_until_due", "auto_advance",
            "description", "footer", "metadata", "discount_percent", "discount_amount",
        ]

    def clean(self):
        cleaned = super().clean()
        customer = cleaned.get("customer")
        currency = (cleaned.get("invoice_currency") or "").strip().upper()
        if customer is not None and currency and currency != customer.currency:
            self.add_error(
                "invoice_currency",
                _("%(customer)s is billed in %(billing)s; an invoice for them cannot be in "
                  "%(currency)s.")
                % {"customer": customer, "billing": customer.currency, "currency": currency},
            )
        return cleaned


class InvoiceLineForm(forms.ModelForm):
    # Plain integer fields: the range checks are the domain's (line_validate), so staff
    # see the same message here as anywhere else.
    quantity = forms.IntegerField(label=_label(InvoiceLine, "quantity"), initial=1)
    unit_amount = forms.IntegerField(label=_label(InvoiceLine, "unit_amount"))
    discount_amount = forms.IntegerField(
        label=_label(InvoiceLine, "discount_amount"), initial=0, required=False
    )

    class Meta:
        model = InvoiceLine
        fields = [
            "description", "quantity", "unit_amount", "period_start", "period_end",
            "tax_rates", "discount_percent", "discount_amount",
        ]

    def clean_discount_amount(self):
        return self.cleaned_data.get("discount_amount") or 0

    def clean(self):
        cleaned = super().clean()
        if any(self.has_error(name) for name in ("quantity", "unit_amount", "discount_amount")):
            return cleaned
        try:
            line_validate(
                quantity=cleaned.get("quantity"),
                unit_amount=cleaned.get("unit_amount"),
                discount_amount=cleaned.get("discount_amount", 0),
                tax_rates=cleaned.get("tax_rates") or (),
                period_start=cleaned.get("period_start"),
                period_end=cleaned.get("period_end"),
            )
        except DomainError as error:
            raise ValidationError(error.message) from None
        return cleaned

    def _post_clean(self):
        # The domain already said what is wrong; the model's validators would repeat it.
        if self.errors:
            return
        super()._post_clean()


class InvoiceLineFormSet(BaseInlineFormSet):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One query for the tax rate choices instead of one per line.
        field = self.form.base_fields["tax_rates"]
        choices = list(field.choices)
        for form in self.forms:
            form.fields["tax_rates"].choices = choices

    def clean(self):
        super().clean()
        kept = [
            form for form in self.forms
            if form.has_changed() or form.instance.pk
            if not self._should_delete_form(form)
        ]
        if len(kept) > MAX_LINES:
            raise ValidationError(_("An invoice has at most %(max)d lines.") % {"max": MAX_LINES})


# --- payments -----------------------------------------------------------------------


class RecordPaymentForm(forms.Form):
    amount = forms.CharField(
        label=gettext_lazy("Amount"), max_length=32,
        help_text=gettext_lazy("In the invoice's currency, e.g. 12.50."),
    )
    method = forms.ChoiceField(label=gettext_lazy("Method"), choices=Payment.Method.choices)
    received_at = forms.DateTimeField(
        label=gettext_lazy("Received at"),
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
    )
    reference = forms.CharField(label=gettext_lazy("Reference"), max_length=100, required=False)
    credit_excess = forms.BooleanField(
        label=gettext_lazy("Credit any excess to the customer's balance"), required=False
    )

    def __init__(self, *args, invoice: Invoice, **kwargs):
        self.invoice = invoice
        super().__init__(*args, **kwargs)

    def clean_amount(self):
        amount = to_minor(self.cleaned_data["amount"], self.invoice.currency)
        if amount <= 0:
            raise ValidationError(_("A payment is a positive amount."))
        return amount


def received_at_initial(now):
    return timezone.localtime(now).replace(second=0, microsecond=0)


# --- credit notes -------------------------------------------------------------------


def _amount_or_zero(text: str, currency: str) -> int:
    text = (text or "").strip()
    return to_minor(text, currency) if text else 0


class CreditNoteForm(forms.Form):
    reason = forms.ChoiceField(
        label=gettext_lazy("Reason"), required=False,
        choices=[("", "---------"), *CreditNote.Reason.choices],
    )
    memo = forms.CharField(label=gettext_lazy("Memo"), required=False, widget=forms.Textarea(
        attrs={"rows": 2}
    ))
    refund_amount = forms.CharField(label=gettext_lazy("Refund"), required=False, max_length=32)
    credit_amount = forms.CharField(
        label=gettext_lazy("Credit to the customer's balance"), required=False, max_length=32
    )
    out_of_band_amount = forms.CharField(
        label=gettext_lazy("Credited outside the system"), required=False, max_length=32
    )

    def __init__(self, *args, invoice: Invoice, **kwargs):
        self.invoice = invoice
        super().__init__(*args, **kwargs)

    def _clean_split(self, name):
        amount = _amount_or_zero(self.cleaned_data.get(name), self.invoice.currency)
        if amount < 0:
            raise ValidationError(_("Refund, credit and out-of-band amounts cannot be negative."))
        return amount

    def clean_refund_amount(self):
        return self._clean_split("refund_amount")

    def clean_credit_amount(self):
        return self._clean_split("credit_amount")

    def clean_out_of_band_amount(self):
        return self._clean_split("out_of_band_amount")


class InvoiceLineChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, line):
        total = format_money(line.amount_excluding_tax + line.tax_amount, line.invoice.currency)
        return f"{line.description} ({total})"


class CreditNoteLineForm(forms.Form):
    invoice_line = InvoiceLineChoiceField(
        label=gettext_lazy("Invoice line"), queryset=InvoiceLine.objects.none(), required=False,
        empty_label=gettext_lazy("(custom line)"),
    )
    description = forms.CharField(label=gettext_lazy("Description"), required=False, max_length=500)
    amount = forms.CharField(label=gettext_lazy("Amount"), max_length=32)

    def __init__(self, *args, invoice: Invoice, **kwargs):
        self.invoice = invoice
        super().__init__(*args, **kwargs)
        self.fields["invoice_line"].queryset = invoice.lines.select_related("invoice")

    def clean_amount(self):
        amount = to_minor(self.cleaned_data["amount"], self.invoice.currency)
        if amount <= 0:
            raise ValidationError(_("Each credit note line is a positive amount."))
        return amount

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("invoice_line") and not (cleaned.get("description") or "").strip():
            raise ValidationError(_("Choose an invoice line or describe what is credited."))
        return cleaned

    def credit_line(self) -> CreditLine:
        line = self.cleaned_data.get("invoice_line")
        description = (self.cleaned_data.get("description") or "").strip()
        return CreditLine(
            amount=self.cleaned_data["amount"],
            description=description or (line.description if line else ""),
            invoice_line_id=line.pk if line else None,
        )


class BaseCreditNoteLineFormSet(forms.BaseFormSet):
    def credit_lines(self) -> list[CreditLine]:
        return [
            form.credit_line() for form in self.forms
            if form.has_changed() and form.cleaned_data
        ]


CreditNoteLineFormSet = forms.formset_factory(
    CreditNoteLineForm, formset=BaseCreditNoteLineFormSet, extra=2, min_num=1, validate_min=True,
)
