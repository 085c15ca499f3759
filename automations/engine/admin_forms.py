"""The automation's forms in the admin: conditions as rows (field, operator, value,
currency) under an AND / OR choice, and each step's parameters as the inputs of its
kind (a wait: a number, a unit and "until paid"...), instead of JSON.

The JSON fields stay the storage: the rows and inputs are read from them and written
back to them, and the whole automation is then checked by services.plan_validate, with
the same messages as before. What the inputs cannot hold (conditions nested in groups)
is edited as JSON, in the field kept for it."""

from itertools import zip_longest

from django import forms
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy
from unfold import widgets as theme

from customers.admin_base import input_classes
from customers.money import to_decimal, to_minor, validate_currency
from subscriptions.models import Subscription

from ..models import RetryPolicy, SubscriptionAfterLastRetry
from .conditions import AMOUNT, BOOL, FIELDS, NUMBER, OP_WORDS, OPS, PREFIXES, TEXT, field_get
from .models import Automation, AutomationStep
from .steps import CUSTOMER_TEMPLATES, step_choices
from .triggers import trigger_choices

CONDITION_ROWS = 20  # more nest as JSON
GROUPS = [("all", gettext_lazy("All of these (AND)")), ("any", gettext_lazy("Any of these (OR)"))]
TRUE, FALSE = {"true", "yes", "1"}, {"false", "no", "0"}


def _styled(form: forms.BaseForm, names) -> None:
    """The theme's classes on the inputs the form declares itself."""
    for name in names:
        widget = form.fields[name].widget
        if not isinstance(widget, forms.HiddenInput):
            widget.attrs["class"] = f"{widget.attrs.get('class', '')} {input_classes(widget)}"


# --- conditions as rows ------------------------------------------------------------------


def field_choices() -> list[tuple[str, str]]:
    return [("", "---------"),
            *((name, field.label) for name, field in FIELDS.items()),
            *((name, _("%(label)s (key beside)") % {"label": field.label})
              for name, field in PREFIXES.items())]


def op_choices() -> list[tuple[str, str]]:
    ops = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "not_in"]
    return [(op, OP_WORDS[op]) for op in ops]


ROW_PARTS = ("field", "key", "op", "value", "currency")
BLANK_ROWS = 2


class ConditionRowsWidget(forms.Widget):
    """A table of conditions, one a row (field, metadata key, operator, value,
    currency), and a few blank rows to add more. Names: <name>_field, <name>_key...,
    repeated once a row."""

    template_name = "admin/widgets/condition_rows.html"

    def format_value(self, value):
        return list(value or [])

    def get_context(self, name, value, attrs):
        context = super().get_context(name, value, attrs)
        rows = [*self.format_value(value), *({} for _n in range(BLANK_ROWS))]
        context["widget"].update({
            "rows": [{part: row.get(part) or "" for part in ROW_PARTS} for row in rows],
            "fields": field_choices(), "ops": op_choices(),
            "input_class": " ".join(theme.BASE_INPUT_CLASSES),
            "select_class": " ".join(theme.SELECT_CLASSES),
        })
        return context

    def value_from_datadict(self, data, files, name):
        columns = [data.getlist(f"{name}_{part}") for part in ROW_PARTS]
        return [dict(zip(ROW_PARTS, (cell or "" for cell in cells), strict=True))
                for cells in zip_longest(*columns)]

    def value_omitted_from_data(self, data, files, name):
        return f"{name}_field" not in data


class ConditionRowsField(forms.Field):
    """The rows typed, as dicts of texts (blank rows left out); the form makes them
    conditions, knowing the group."""

    widget = ConditionRowsWidget

    def __init__(self, **kwargs):
        kwargs.setdefault("required", False)
        super().__init__(**kwargs)

    def to_python(self, value):
        return [{part: (row.get(part) or "").strip() for part in ROW_PARTS}
                for row in value or [] if any((row.get(part) or "").strip()
                                              for part in ROW_PARTS if part != "op")]

    def has_changed(self, initial, data):
        return self.to_python(initial) != self.to_python(data)


def condition_rows_fields() -> dict[str, forms.Field]:
    return {
        "conditions_group": forms.ChoiceField(
            label=gettext_lazy("Conditions"), choices=GROUPS, initial="all", required=False),
        "condition_rows": ConditionRowsField(
            label=gettext_lazy("Condition rows"),
            help_text=gettext_lazy("An amount such as 500.00 with its currency; values "
                                   "separated by commas for \"is one of\"; true or false; "
                                   "the key for metadata.")),
    }


def rows_of(conditions) -> tuple[str, list[dict]] | None:
    """The group and rows of `conditions`, or None when they nest deeper than rows go."""
    if not conditions:
        return "all", []
    if "field" in conditions:
        group, leaves = "all", [conditions]
    else:
        group = "all" if "all" in conditions else "any"
        leaves = conditions.get(group)
    if (not isinstance(leaves, list) or len(leaves) > CONDITION_ROWS
            or not all(isinstance(leaf, dict) and "field" in leaf for leaf in leaves)):
        return None
    return group, [_row_of(leaf) for leaf in leaves]


def _row_of(leaf: dict) -> dict:
    name, value, currency = leaf.get("field"), leaf.get("value"), leaf.get("currency") or ""
    key = ""
    if name not in FIELDS and isinstance(name, str) and name.rpartition(".")[0] in PREFIXES:
        name, _dot, key = name.rpartition(".")
    field = field_get(leaf.get("field"))
    if field is not None and field.type == AMOUNT and isinstance(value, int) and currency:
        try:
            value = to_decimal(value, currency)
        except (KeyError, ValueError, ValidationError):
            pass
    if isinstance(value, bool):
        value = "true" if value else "false"
    elif isinstance(value, list):
        value = ", ".join(str(v) for v in value)
    return {"field": name, "key": key, "op": leaf.get("op", "eq"),
            "value": "" if value is None else str(value), "currency": currency}


def leaf_of(number: int, row: dict) -> tuple[dict | None, list[str]]:
    """The condition of one row (None for an empty row), or the reasons it cannot be."""
    name, key, op, text, currency = (row.get(k) or "" for k in
                                     ("field", "key", "op", "value", "currency"))
    text, currency = text.strip(), currency.strip().upper()
    where = _("Condition %(n)s") % {"n": number}
    if not name:
        if text or key or currency:
            return None, [_("%(where)s: choose a field.") % {"where": where}]
        return None, []
    if name in PREFIXES:
        if not key.strip():
            return None, [_("%(where)s: give the metadata key.") % {"where": where}]
        name = f"{name}.{key.strip()}"
    field = field_get(name)
    if field is None:
        return None, [_("%(where)s: unknown field %(f)s.") % {"where": where, "f": name}]
    label = field.label if name in FIELDS else name
    if op not in OPS[field.type]:
        return None, [_("%(where)s: %(f)s takes the operators %(ops)s.") % {
            "where": where, "f": label,
            "ops": ", ".join(str(OP_WORDS[o]) for o in sorted(OPS[field.type]))}]
    leaf = {"field": name, "op": op}
    try:
        leaf["value"] = _value_of(field.type, op, text, currency, label)
    except ValidationError as error:
        return None, [f"{where}: {message}" for message in error.messages]
    if field.type == AMOUNT:
        leaf["currency"] = currency
    elif currency:
        return None, [_("%(where)s: %(f)s is not an amount: it takes no currency.")
                      % {"where": where, "f": label}]
    return leaf, []


def _value_of(type_: str, op: str, text: str, currency: str, label):
    if type_ == AMOUNT:
        if not currency:
            raise ValidationError(_("the amount of %(f)s needs its currency, e.g. USD.")
                                  % {"f": label})
        validate_currency(currency)
        if not text:
            raise ValidationError(_("%(f)s is compared with an amount, e.g. 500.00.")
                                  % {"f": label})
        return to_minor(text, currency)
    if type_ == NUMBER:
        try:
            return int(text)
        except ValueError:
            raise ValidationError(_("%(f)s is compared with a whole number, not %(v)s.")
                                  % {"f": label, "v": repr(text)}) from None
    if type_ == BOOL:
        if text.lower() in TRUE | FALSE:
            return text.lower() in TRUE
        raise ValidationError(_("%(f)s is true or false, not %(v)s.")
                              % {"f": label, "v": repr(text)})
    assert type_ == TEXT
    if op in ("in", "not_in"):
        values = [part.strip() for part in text.split(",") if part.strip()]
        if not values:
            raise ValidationError(_("%(f)s: list the values, separated by commas.")
                                  % {"f": label})
        return values
    return text


class AutomationForm(forms.ModelForm):
    trigger = forms.ChoiceField(
        label=pgettext_lazy("automation", "trigger"), choices=trigger_choices
    )

    class Meta:
        model = Automation
        fields = ("name", "enabled", "priority", "trigger", "days", "conditions")
        labels = {"conditions": gettext_lazy("Nested conditions (JSON)")}
        help_texts = {"conditions": gettext_lazy(
            "Only for conditions the rows cannot hold (groups inside groups): "
            '{"all": [{"field": "invoice.total", "op": "gte", "value": 50000, '
            '"currency": "USD"}, {"any": [...]}]}. Leave the rows empty to use it.')}

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _styled(self, ["conditions_group"])
        if self.is_bound:
            return
        rows = rows_of(self.instance.conditions if self.instance.pk else {})
        if rows is None:  # nested: kept in the JSON field
            return
        self.initial["conditions"] = {}
        self.initial["conditions_group"], self.initial["condition_rows"] = rows

    def clean(self):
        data = super().clean()
        leaves, errors = [], []
        for number, row in enumerate(data.get("condition_rows") or [], start=1):
            leaf, row_errors = leaf_of(number, row)
            errors.extend(row_errors)
            if leaf is not None:
                leaves.append(leaf)
        if errors:
            raise ValidationError(errors)
        nested = data.get("conditions")
        if leaves and nested:
            raise ValidationError(_("Give the conditions as rows or as JSON, not both."))
        data["conditions"] = ({data.get("conditions_group") or "all": leaves} if leaves
                              else nested or {})
        return data


ROW_FIELDS = condition_rows_fields()
AutomationForm.base_fields.update(ROW_FIELDS)
AutomationForm.declared_fields.update(ROW_FIELDS)


# --- step parameters as inputs ----------------------------------------------------------


def _policy_choices():
    return [("", _("A new policy, as below")),
            *((name, name) for name in RetryPolicy.objects.order_by("name")
              .values_list("name", flat=True))]


def _template_choices():
    return [(key, key.replace("_", " ")) for key in CUSTOMER_TEMPLATES]


UNITS = [("days", gettext_lazy("days")), ("hours", gettext_lazy("hours"))]
WHEN = [("now", gettext_lazy("Now")), ("period_end", gettext_lazy("At the end of the period"))]
TARGETS = [("invoice", gettext_lazy("the invoice")), ("customer", gettext_lazy("the customer"))]
SUB_AFTER = [("", gettext_lazy("As the billing settings say")),
             *SubscriptionAfterLastRetry.choices]
REASONS = Subscription.CancellationReason
MODES, AFTER = RetryPolicy.Mode, RetryPolicy.AfterLastRetry


def step_input_fields() -> dict[str, forms.Field]:
    text = {"required": False}
    return {
        "wait_amount": forms.IntegerField(label=pgettext_lazy("automation", "Wait"), **text),
        "wait_unit": forms.ChoiceField(label=gettext_lazy("Unit"), choices=UNITS,
                                       initial="days", **text),
        "wait_until_paid": forms.BooleanField(
            label=gettext_lazy("Stop if the invoice is paid meanwhile"), **text),
        "retry_policy": forms.ChoiceField(label=gettext_lazy("Retry policy"),
                                          choices=_policy_choices, initial="", **text),
        "retry_mode": forms.ChoiceField(label=gettext_lazy("Mode"), choices=MODES.choices,
                                        initial=MODES.SMART, **text),
        "retry_max_retries": forms.IntegerField(label=gettext_lazy("Retries (up to 8)"),
                                                initial=8, **text),
        "retry_window_days": forms.IntegerField(label=gettext_lazy("Within (days, 7 to 60)"),
                                                initial=60, **text),
        "retry_custom_schedule": forms.CharField(
            label=gettext_lazy("Custom schedule (days after the previous attempt)"),
            help_text=gettext_lazy("E.g. 1, 3, 5, 7."), max_length=100, **text),
        "retry_after_last_retry": forms.ChoiceField(
            label=gettext_lazy("After the last retry"), choices=AFTER.choices,
            initial=AFTER.LEAVE_PAST_DUE, **text),
        "retry_subscription_after_last_retry": forms.ChoiceField(
            label=gettext_lazy("Its subscription after the last retry"), choices=SUB_AFTER,
            initial="", **text),
        "cancel_when": forms.ChoiceField(label=gettext_lazy("Cancel"), choices=WHEN,
                                         initial="now", **text),
        "cancel_reason": forms.ChoiceField(label=gettext_lazy("Reason"), choices=REASONS.choices,
                                           initial=REASONS.PAYMENT_FAILED, **text),
        "pause_behavior": forms.ChoiceField(
            label=gettext_lazy("Invoices meanwhile"), choices=Subscription.PauseBehavior.choices,
            initial=Subscription.PauseBehavior.KEEP_AS_DRAFT, **text),
        "pause_resume_after_days": forms.IntegerField(
            label=gettext_lazy("Resume after (days, empty: until resumed)"), **text),
        "team_to": forms.CharField(
            label=gettext_lazy("Recipients"), widget=forms.Textarea(attrs={"rows": 2}),
            help_text=gettext_lazy("Staff users or addresses in the company's domain, one "
                                   "a line."), **text),
        "team_memo": forms.CharField(
            label=gettext_lazy("Memo"), widget=forms.Textarea(attrs={"rows": 2}), **text,
            help_text=gettext_lazy("May name {invoice}, {amount}, {customer}, "
                                   "{days_past_due} and {automation}.")),
        "customer_template": forms.ChoiceField(
            label=gettext_lazy("Email"), choices=_template_choices,
            initial=lambda: next(iter(CUSTOMER_TEMPLATES), ""), **text),
        "customer_survey_url": forms.CharField(label=gettext_lazy("Survey link (https://)"),
                                               max_length=300, **text),
        "metadata_target": forms.ChoiceField(label=gettext_lazy("On"), choices=TARGETS,
                                             initial="invoice", **text),
        "metadata_key": forms.CharField(label=gettext_lazy("Key"), max_length=40, **text),
        "metadata_value": forms.CharField(label=gettext_lazy("Value"), max_length=500,
                                          **text),
        "segment": forms.CharField(label=gettext_lazy("Segment"), max_length=50, **text),
        "note_text": forms.CharField(label=gettext_lazy("Note"), max_length=500,
                                     widget=forms.Textarea(attrs={"rows": 2}), **text),
    }


# Each step kind's inputs (the names above), in the order they show.
STEP_INPUTS = {
    "wait": ("wait_amount", "wait_unit", "wait_until_paid"),
    "start_retry_policy": ("retry_policy", "retry_mode", "retry_max_retries",
                           "retry_window_days", "retry_custom_schedule",
                           "retry_after_last_retry", "retry_subscription_after_last_retry"),
    "cancel_subscription": ("cancel_when", "cancel_reason"),
    "pause_collection": ("pause_behavior", "pause_resume_after_days"),
    "email_team": ("team_to", "team_memo"),
    "email_customer": ("customer_template", "customer_survey_url"),
    "set_metadata": ("metadata_target", "metadata_key", "metadata_value"),
    "set_segment": ("segment",),
    "add_note": ("note_text",),
    "mark_uncollectible": (),
    "void_invoice": (),
}
# Inputs named after the parameter they hold, less their kind's prefix.
PLAIN = {"cancel_when": "when", "cancel_reason": "reason", "pause_behavior": "behavior",
         "pause_resume_after_days": "resume_after_days", "team_to": "to", "team_memo": "memo",
         "customer_template": "template", "customer_survey_url": "survey_url",
         "metadata_target": "target", "metadata_key": "key", "metadata_value": "value",
         "segment": "segment", "note_text": "text"}
RETRY = {"retry_mode": "mode", "retry_max_retries": "max_retries",
         "retry_window_days": "window_days", "retry_after_last_retry": "after_last_retry",
         "retry_subscription_after_last_retry": "subscription_after_last_retry"}


def inputs_of(kind: str, params: dict) -> dict:
    """The inputs' initial values for a step's stored parameters."""
    if not isinstance(params, dict):
        return {}
    if kind == "wait":
        days, hours = params.get("days", 0), params.get("hours", 0)
        amount, unit = (days, "days") if days and not hours else (days * 24 + hours, "hours")
        return {"wait_amount": amount or None, "wait_unit": unit,
                "wait_until_paid": bool(params.get("until_paid"))}
    if kind == "start_retry_policy":
        if "policy" in params:
            return {"retry_policy": params["policy"]}
        initial = {name: params[key] for name, key in RETRY.items() if key in params}
        if params.get("custom_schedule"):
            initial["retry_custom_schedule"] = ", ".join(map(str, params["custom_schedule"]))
        return initial
    return {name: params[key] for name, key in PLAIN.items()
            if name in STEP_INPUTS.get(kind, ()) and key in params}


def params_of(kind: str, data: dict) -> dict:
    """A step's parameters from its inputs (what is left out is refused by the step's
    own check, with its message)."""
    if kind == "wait":
        params = {}
        if data.get("wait_amount") is not None:
            params[data.get("wait_unit") or "days"] = data["wait_amount"]
        if data.get("wait_until_paid"):
            params["until_paid"] = True
        return params
    if kind == "start_retry_policy":
        if data.get("retry_policy"):
            return {"policy": data["retry_policy"]}
        params = {key: data[name] for name, key in RETRY.items()
                  if data.get(name) not in (None, "")}
        if params.get("mode") == MODES.CUSTOM:
            params["custom_schedule"] = data.get("retry_custom_schedule_days") or []
        return params
    return {key: data[name] for name, key in PLAIN.items()
            if name in STEP_INPUTS.get(kind, ()) and data.get(name) not in (None, "")}


def _schedule(text: str) -> list[int]:
    try:
        return [int(part) for part in text.replace(";", ",").split(",") if part.strip()]
    except ValueError:
        raise ValidationError(_("The custom schedule is whole days separated by commas, "
                                "e.g. 1, 3, 5, 7.")) from None


class StepForm(forms.ModelForm):
    kind = forms.ChoiceField(label=pgettext_lazy("automation", "step"),
                             choices=lambda: [("", "---------"), *step_choices()])

    class Meta:
        model = AutomationStep
        fields = ("position", "kind")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _styled(self, INPUT_FIELDS)
        if not self.is_bound and self.instance.pk:
            self.initial.update(inputs_of(self.instance.kind, self.instance.params))

    def clean(self):
        data = super().clean()
        kind = data.get("kind")
        if not kind:
            return data
        if kind == "start_retry_policy" and data.get("retry_mode") == MODES.CUSTOM:
            try:
                data["retry_custom_schedule_days"] = _schedule(
                    data.get("retry_custom_schedule") or "")
            except ValidationError as error:
                self.add_error("retry_custom_schedule", error)
                return data
        data["params"] = params_of(kind, data)
        self.instance.params = data["params"]
        return data


INPUT_FIELDS = step_input_fields()
StepForm.base_fields.update(INPUT_FIELDS)
StepForm.declared_fields.update(INPUT_FIELDS)


def step_fieldsets() -> tuple:
    """The inline's layout: position and kind, then each kind's inputs under its name
    (the page shows only the chosen kind's)."""
    labels = dict(step_choices())
    return (
        (None, {"fields": (("position", "kind"),)}),
        *((labels.get(kind, kind), {"fields": (inputs,), "classes": ["step-inputs",
                                                                      f"step-{kind}"]})
          for kind, inputs in STEP_INPUTS.items() if inputs),
    )

