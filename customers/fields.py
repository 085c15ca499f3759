"""Form fields for what staff type: amounts in major units, tax ids, metadata, countries,
amounts per currency. The database keeps minor units and JSON; people never see either.

Every amount typed goes through money.to_minor (the one exact conversion) and every
amount shown through money.to_decimal.
"""

from decimal import Decimal, InvalidOperation

from babel import Locale
from django import forms
from django.core.exceptions import ValidationError
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from stdnum.exceptions import ValidationError as StdnumError
from unfold import widgets as theme

from .money import is_int, known_currencies, to_decimal, to_minor
from .taxids import TAX_ID_TYPES, tax_id_normalize

# Stripe's limits on metadata (and ours): 50 keys, keys of 40 characters, values of 500.
METADATA_MAX_KEYS = 50
METADATA_MAX_KEY_LENGTH = 40
METADATA_MAX_VALUE_LENGTH = 500
BLANK_ROWS = 2


def _reader_locale() -> Locale:
    return Locale.parse(translation.to_locale(translation.get_language() or "en"))


# --- amounts in major units ---------------------------------------------------------


class MoneyField(forms.CharField):
    """An amount typed in the currency's major units ("12.50"), cleaned to minor units.

    The currency is set on the field by the form (`field.currency`) once it is known;
    a form that learns it only from another field (a new invoice's customer) converts
    in its clean() with `money_convert`. Initial values are minor units and are shown
    in major units."""

    def __init__(self, *, currency: str | None = None, **kwargs):
        kwargs.setdefault("widget", forms.TextInput(
            attrs={"inputmode": "decimal", "size": 12, "maxlength": 32}
        ))
        super().__init__(**kwargs)
        self.currency = currency

    def prepare_value(self, value):
        if is_int(value) and self.currency:
            return str(to_decimal(value, self.currency))
        return value

    def to_python(self, value):
        text = (super().to_python(value) or "").strip().replace(" ", "").replace("\u00a0", "")
        if not text:
            return None
        if self.currency:
            return to_minor(text, self.currency)
        try:
            return Decimal(text)
        except InvalidOperation:
            raise ValidationError(_("Enter an amount such as 12.50.")) from None

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != (initial if initial is not None else None)
        except ValidationError:
            return True


def money_fields_set_currency(form: forms.BaseForm, currency: str | None) -> None:
    for field in form.fields.values():
        if isinstance(field, MoneyField):
            field.currency = currency


def money_convert(form: forms.BaseForm, currency: str) -> None:
    """Turn the amounts a form cleaned before it knew its currency into minor units,
    each error next to its field."""
    for name, field in form.fields.items():
        value = form.cleaned_data.get(name)
        if isinstance(field, MoneyField) and isinstance(value, Decimal):
            try:
                form.cleaned_data[name] = to_minor(value, currency)
            except ValidationError as error:
                form.add_error(name, error)


# --- rows of two columns --------------------------------------------------------------


class PairRowsWidget(forms.Widget):
    """Rows of (key, value): the existing ones and a few blank ones to add more. The
    first column is a select when `choices` is given."""

    template_name = "admin/widgets/pair_rows.html"

    def __init__(self, *, key_label, value_label, choices=None, attrs=None):
        super().__init__(attrs)
        self.key_label, self.value_label, self.choices = key_label, value_label, choices

    def format_value(self, value):
        return list(value or [])

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        rows = [(str(k), "" if v is None else str(v)) for k, v in self.format_value(value)]
        rows += [("", "")] * BLANK_ROWS
        choices = self.choices() if callable(self.choices) else self.choices
        context["widget"].update({
            "rows": rows, "key_label": self.key_label, "value_label": self.value_label,
            "choices": choices, "input_class": " ".join(theme.BASE_INPUT_CLASSES),
            "select_class": " ".join(theme.SELECT_CLASSES),
        })
        return context

    def value_from_datadict(self, data, files, name):
        keys, values = data.getlist(f"{name}_key"), data.getlist(f"{name}_value")
        return [
            (k.strip(), v.strip()) for k, v in zip(keys, values, strict=False)
            if k.strip() or v.strip()
        ]

    def value_omitted_from_data(self, data, files, name):
        return f"{name}_key" not in data


class PairRowsField(forms.Field):
    """A list of (key, value) rows in the form; the model's JSON in cleaned_data."""

    def __init__(self, *, widget_kwargs, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(widget=PairRowsWidget(**widget_kwargs), **kwargs)

    def prepare_value(self, value):
        return self.to_pairs(value)

    def to_pairs(self, value) -> list[tuple]:
        raise NotImplementedError

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != self.to_python(self.to_pairs(initial))
        except ValidationError:
            return True


class MetadataField(PairRowsField):
    """Metadata as key/value rows, with Stripe's limits."""

    def __init__(self, **kwargs):
        super().__init__(widget_kwargs={
            "key_label": gettext_lazy("Key"), "value_label": gettext_lazy("Value"),
        }, **kwargs)

    def to_pairs(self, value):
        if isinstance(value, dict):
            return list(value.items())
        return list(value or [])

    def to_python(self, value):
        rows = self.to_pairs(value)
        metadata: dict[str, str] = {}
        for key, text in rows:
            if not key:
                raise ValidationError(_("Each value needs a key (%(value)s has none).")
                                      % {"value": text})
            if len(key) > METADATA_MAX_KEY_LENGTH:
                raise ValidationError(
                    _("The key “%(key)s” is %(length)d characters long: keys have at most "
                      "%(max)d.") % {"key": key, "length": len(key),
                                     "max": METADATA_MAX_KEY_LENGTH})
            if len(str(text)) > METADATA_MAX_VALUE_LENGTH:
                raise ValidationError(
                    _("The value of “%(key)s” is longer than %(max)d characters.")
                    % {"key": key, "max": METADATA_MAX_VALUE_LENGTH})
            if key in metadata:
                raise ValidationError(_("The key “%(key)s” is given twice.") % {"key": key})
            metadata[key] = str(text)
        if len(metadata) > METADATA_MAX_KEYS:
            raise ValidationError(
                _("Metadata has at most %(max)d keys; this has %(count)d.")
                % {"max": METADATA_MAX_KEYS, "count": len(metadata)})
        return metadata


def currency_choices():
    return [("", "—")] + [(code, code) for code in sorted(known_currencies())]


class AmountsByCurrencyField(PairRowsField):
    """Amounts per currency (tolerances, alert thresholds): rows of currency and amount in
    major units; minor units in the database ({"EUR": 100000})."""

    def __init__(self, **kwargs):
        super().__init__(widget_kwargs={
            "key_label": gettext_lazy("Currency"), "value_label": gettext_lazy("Amount"),
            "choices": currency_choices,
        }, **kwargs)

    def to_pairs(self, value):
        if isinstance(value, dict):
            return [
                (code, to_decimal(amount, code) if is_int(amount) else amount)
                for code, amount in sorted(value.items())
            ]
        return list(value or [])

    def to_python(self, value):
        amounts: dict[str, int] = {}
        for code, text in self.to_pairs(value):
            if code not in known_currencies():
                raise ValidationError(_("Choose a currency for the amount %(amount)s.")
                                      % {"amount": text or "—"})
            if code in amounts:
                raise ValidationError(_("%(code)s is given twice.") % {"code": code})
            if text in ("", None):
                raise ValidationError(_("Enter the amount for %(code)s.") % {"code": code})
            try:
                minor = to_minor(str(text).replace(" ", ""), code)
            except ValidationError as error:
                raise ValidationError(
                    _("%(code)s: %(error)s") % {"code": code, "error": " ".join(error.messages)}
                ) from None
            if minor < 0:
                raise ValidationError(_("%(code)s: enter 0 or more.") % {"code": code})
            amounts[code] = minor
        return amounts


class TaxIdsField(PairRowsField):
    """Tax ids as rows of type and number, each checked with python-stdnum where the type
    has a format (EU VAT, GB VAT, BR CNPJ/CPF, ...) and stored in its compact form."""

    def __init__(self, **kwargs):
        super().__init__(widget_kwargs={
            "key_label": gettext_lazy("Type"), "value_label": gettext_lazy("Number"),
            "choices": lambda: [("", "—")] + [(k, t.label) for k, t in TAX_ID_TYPES.items()],
        }, **kwargs)

    def to_pairs(self, value):
        return [
            (row.get("type", ""), row.get("value", "")) if isinstance(row, dict) else row
            for row in (value or [])
        ]

    def to_python(self, value):
        tax_ids = []
        for kind, number in self.to_pairs(value):
            if kind not in TAX_ID_TYPES:
                raise ValidationError(_("Choose the type of the tax id %(value)s.")
                                      % {"value": number or "—"})
            if not number:
                raise ValidationError(_("Enter the number of the %(type)s.")
                                      % {"type": TAX_ID_TYPES[kind].label})
            try:
                compact = tax_id_normalize(kind, number)
            except StdnumError:
                raise ValidationError(
                    _("%(value)s is not a valid %(type)s (its format or check digits are "
                      "wrong).") % {"value": number, "type": TAX_ID_TYPES[kind].label}
                ) from None
            tax_ids.append({"type": kind, "value": compact})
        return tax_ids


# --- countries ----------------------------------------------------------------------

# CLDR territories that are not countries (or not ISO 3166-1 codes a postal address uses).
NOT_COUNTRIES = {"EU", "EZ", "UN", "QO", "ZZ", "XA", "XB"}


def country_names(locale: Locale | None = None) -> dict[str, str]:
    locale = locale or _reader_locale()
    return {
        code: name for code, name in locale.territories.items()
        if len(code) == 2 and code.isalpha() and code not in NOT_COUNTRIES
    }


def country_choices():
    names = country_names()
    return [("", "—")] + sorted(((code, name) for code, name in names.items()),
                               key=lambda pair: pair[1])


class CountryField(forms.ChoiceField):
    """A select of country names in the reader's language; the ISO 3166 code is stored."""

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        kwargs.setdefault("error_messages", {
            "invalid_choice": gettext_lazy(
                "%(value)s is not a country this list knows; choose one by its name."),
        })
        super().__init__(choices=country_choices, **kwargs)


# --- short lists ----------------------------------------------------------------------


class CommaListField(forms.CharField):
    """A short list typed as "1, 3, 5" (days, segments): whole numbers or words."""

    def __init__(self, *, item=str, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)
        self.item = item

    def prepare_value(self, value):
        if isinstance(value, list | tuple):
            return ", ".join(str(v) for v in value)
        return value

    def to_python(self, value):
        if isinstance(value, list):
            return value
        parts = [p.strip() for p in (super().to_python(value) or "").split(",") if p.strip()]
        if self.item is int:
            try:
                return [int(p) for p in parts]
            except ValueError:
                raise ValidationError(
                    _("Enter whole numbers separated by commas, e.g. -7, 0, 3.")
                ) from None
        return parts

    def has_changed(self, initial, data):
        try:
            return self.to_python(data) != (initial or [])
        except ValidationError:
            return True
