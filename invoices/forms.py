"""Admin forms for invoices: they turn what staff type into domain calls' arguments and
refuse bad input before anything is written (the domain checks again)."""

from django import forms
from django.core.exceptions import ValidationError
from django.forms.models import BaseInlineFormSet
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.errors import DomainError
from customers.fields import MetadataField, MoneyField, money_convert, money_fields_set_currency
from customers.money import format_money, to_minor

from .credit_notes import CreditLine
from .models import MAX_LINES, CreditNote, Invoice, InvoiceLine, Payment
from .services import line_validate


def _label(model, name):
    return model._meta.get_field(name).verbose_name


# --- invoice and lines --------------------------------------------------------------


class InvoiceChangeForm(forms.ModelForm):
    """A draft's (or a finalized invoice's memo and metadata) fields as people type them:
    the discount in the invoice's currency, metadata as key/value rows."""

    metadata = MetadataField(label=gettext_lazy("Metadata"))
    discount_amount = MoneyField(
        label=gettext_lazy("Discount amount"), required=False,
        help_text=gettext_lazy("In the invoice's currency, e.g. 12.50."),
    )

    class Meta:
        model = Invoice
        fields = [
            "collection_method", "due_date", "days_until_due", "auto_advance",
            "description", "footer", "metadata", "discount_percent", "discount_amount",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        money_fields_set_currency(self, self.instance.currency or None)

    def clean_discount_amount(self):
        return self.cleaned_data.get("discount_amount") or 0


class InvoiceAddForm(InvoiceChangeForm):
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
        if customer is not None:
            money_convert(self, customer.currency)
        return cleaned


class InvoiceLineForm(forms.ModelForm):
    # Amounts typed in the invoice's currency; the range checks are the domain's
    # (line_validate), so staff see the same message here as anywhere else.
    quantity = forms.IntegerField(label=_label(InvoiceLine, "quantity"), initial=1)
    unit_amount = MoneyField(label=gettext_lazy("unit amount"))
    discount_amount = MoneyField(label=gettext_lazy("discount amount"), required=False)

    def _invoice_currency(self) -> str | None:
        # The formset hands each line its invoice (parent_invoice); a new invoice learns
        # its currency from its customer only once the invoice form is validated, which
        # comes before the lines are.
        invoice = getattr(self, "parent_invoice", None)
        if invoice is None:
            return None
        return invoice.currency or (invoice.customer.currency if invoice.customer_id else None)

    def full_clean(self):
        money_fields_set_currency(self, self._invoice_currency())
        super().full_clean()

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
        if self.fields["unit_amount"].currency is None or cleaned.get("unit_amount") is None:
            return cleaned  # a new invoice whose customer is missing: that is said above
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
    def _construct_form(self, i, **kwargs):
        form = super()._construct_form(i, **kwargs)
        form.parent_invoice = self.instance
        money_fields_set_currency(form, form._invoice_currency())
        return form

    @property
    def empty_form(self):
        form = super().empty_form
        form.parent_invoice = self.instance
        money_fields_set_currency(form, form._invoice_currency())
        return form

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # One query for the tax rate choices instead of one per line.
        field = self.form.base_fields.get("tax_rates")
        if field is None:  # a finalized invoice's lines: read-only
            return
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
