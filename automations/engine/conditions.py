"""Conditions on the run's subject, as data: {"all": [...]} (AND) or {"any": [...]} (OR)
groups, nesting, of leaves {"field", "op", "value"} (+ "currency" for amounts).

Fields are a registry: each says its type and what it needs (an invoice, a
subscription, the payment of a failure event), so a condition on a field the trigger
does not carry is refused when the automation is saved, with the reason."""

import operator
from collections.abc import Callable
from dataclasses import dataclass

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from customers.money import is_int

from .subjects import Subject, days_past_due
from .triggers import CUSTOMER, INVOICE, PAYMENT

AMOUNT, NUMBER, TEXT, BOOL = "amount", "number", "text", "bool"
OPS = {
    AMOUNT: {"eq", "ne", "gt", "gte", "lt", "lte"},
    NUMBER: {"eq", "ne", "gt", "gte", "lt", "lte"},
    TEXT: {"eq", "ne", "in", "not_in"},
    BOOL: {"eq"},
}
OP_WORDS = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤",
            "in": gettext_lazy("is one of"), "not_in": gettext_lazy("is none of")}
MAX_DEPTH = 4


@dataclass(frozen=True)
class Field:
    name: str
    label: object
    type: str
    needs: str
    get: Callable  # get(subject) -> value
    currency: Callable | None = None  # amounts: currency(subject) -> "USD"


FIELDS: dict[str, Field] = {}
# "invoice.metadata.<key>": fields whose last part is free.
PREFIXES: dict[str, Field] = {}


def field_register(field: Field, *, prefix: bool = False) -> Field:
    (PREFIXES if prefix else FIELDS)[field.name] = field
    return field


def field_get(name) -> Field | None:
    if not isinstance(name, str):
        return None
    if name in FIELDS:
        return FIELDS[name]
    head, _dot, key = name.rpartition(".")
    return PREFIXES.get(head) if key else None


def _invoice(attr):
    return lambda s: getattr(s.invoice, attr) if s.invoice is not None else None


def _customer(attr):
    return lambda s: getattr(s.customer, attr) if s.customer is not None else None


def _invoice_currency(s: Subject):
    return s.invoice.currency if s.invoice is not None else None


for _field in [
    Field("invoice.total", gettext_lazy("invoice total"), AMOUNT, INVOICE, _invoice("total"),
          _invoice_currency),
    Field("invoice.amount_remaining", gettext_lazy("amount remaining"), AMOUNT, INVOICE,
          _invoice("amount_remaining"), _invoice_currency),
    Field("invoice.attempt_count", gettext_lazy("attempt count"), NUMBER, INVOICE,
          _invoice("attempt_count")),
    Field("invoice.days_past_due", gettext_lazy("days past due"), NUMBER, INVOICE,
          lambda s: days_past_due(s.invoice, s.now)),
    Field("invoice.collection_method", gettext_lazy("collection method"), TEXT, INVOICE,
          _invoice("collection_method")),
    Field("payment.decline_code", gettext_lazy("decline code"), TEXT, PAYMENT,
          lambda s: s.data.get("decline_code") or ""),
    Field("payment.hard_decline", gettext_lazy("hard decline"), BOOL, PAYMENT,
          lambda s: bool(s.data.get("hard_decline"))),
    Field("customer.segment", gettext_lazy("customer segment"), TEXT, CUSTOMER,
          _customer("segment")),
    Field("customer.locale", gettext_lazy("customer language"), TEXT, CUSTOMER,
          _customer("preferred_locale")),
    Field("customer.country", gettext_lazy("customer country"), TEXT, CUSTOMER,
          _customer("country")),
]:
    field_register(_field)
field_register(Field("invoice.metadata", gettext_lazy("invoice metadata"), TEXT, INVOICE,
                     lambda s: s.invoice.metadata if s.invoice is not None else None),
               prefix=True)
field_register(Field("customer.metadata", gettext_lazy("customer metadata"), TEXT, CUSTOMER,
                     lambda s: s.customer.metadata if s.customer is not None else None),
               prefix=True)


# --- checking, at save ----------------------------------------------------------------


def conditions_validate(conditions, carries: frozenset) -> list[str]:
    """Every reason `conditions` cannot be saved for a trigger carrying `carries`."""
    if conditions in (None, {}, []):
        return []
    errors: list[str] = []
    _check(conditions, carries, errors, 0)
    return errors


def _check(node, carries, errors, depth) -> None:
    if depth > MAX_DEPTH:
        errors.append(_("Conditions nest at most %(n)s groups deep.") % {"n": MAX_DEPTH})
        return
    if not isinstance(node, dict):
        errors.append(_("A condition is an object, e.g. {\"field\": ..., \"op\": ..., "
                        "\"value\": ...}; got %(v)s.") % {"v": _short(node)})
        return
    groups = [key for key in ("all", "any") if key in node]
    if groups:
        if len(node) != 1 or not isinstance(node[groups[0]], list) or not node[groups[0]]:
            errors.append(_('A group is {"all": [conditions]} or {"any": [conditions]}, '
                            "with at least one condition."))
            return
        for child in node[groups[0]]:
            _check(child, carries, errors, depth + 1)
        return
    _leaf_check(node, carries, errors)


def _leaf_check(leaf: dict, carries, errors) -> None:
    unknown = set(leaf) - {"field", "op", "value", "currency"}
    if unknown:
        errors.append(_("Unknown keys in a condition: %(k)s.") % {"k": ", ".join(sorted(unknown))})
    name = leaf.get("field")
    field = field_get(name)
    if field is None:
        errors.append(_("Unknown field %(f)s. Known fields: %(known)s.") % {
            "f": _short(name), "known": ", ".join([*FIELDS, *(p + ".<key>" for p in PREFIXES)])})
        return
    if field.needs not in carries:
        errors.append(_("The trigger carries no %(what)s: a condition on %(f)s cannot "
                        "apply.") % {"what": field.needs, "f": name})
    op, value = leaf.get("op"), leaf.get("value")
    if op not in OPS[field.type]:
        errors.append(_("%(f)s takes the operators %(ops)s, not %(op)s.") % {
            "f": name, "ops": ", ".join(sorted(OPS[field.type])), "op": _short(op)})
        return
    errors.extend(_value_errors(field, name, op, value, leaf.get("currency")))


def _value_errors(field: Field, name, op, value, currency) -> list[str]:
    if field.type == AMOUNT:
        if not is_int(value):
            return [_("%(f)s is compared with an amount in minor units (a whole number, "
                      "e.g. 50000 for 500.00), not %(v)s.") % {"f": name, "v": _short(value)}]
        if not (isinstance(currency, str) and len(currency) == 3 and currency.isalpha()):
            return [_("The amount of %(f)s needs its currency (\"currency\": \"USD\").")
                    % {"f": name}]
        return []
    if field.type == NUMBER and not is_int(value):
        return [_("%(f)s is compared with a whole number, not %(v)s.")
                % {"f": name, "v": _short(value)}]
    if field.type == BOOL and not isinstance(value, bool):
        return [_("%(f)s is true or false, not %(v)s.") % {"f": name, "v": _short(value)}]
    if field.type == TEXT:
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                return [_("%(f)s %(op)s takes a list of texts.") % {"f": name, "op": op}]
        elif not isinstance(value, str):
            return [_("%(f)s is compared with a text, not %(v)s.")
                    % {"f": name, "v": _short(value)}]
    if currency is not None and field.type != AMOUNT:
        return [_("%(f)s is not an amount: it takes no currency.") % {"f": name}]
    return []


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


# --- evaluating, at match time ---------------------------------------------------------
# Conditions are compiled once into nested closures (matching caches them per published
# version): evaluating one then reads its fields and compares, with no lookup of the
# field registry, the operator or the metadata key per subject.

Matcher = Callable[[Subject], bool]
COMPARE = {
    "eq": operator.eq, "ne": operator.ne, "gt": operator.gt, "gte": operator.ge,
    "lt": operator.lt, "lte": operator.le,
    "in": lambda left, right: left in right,
    "not_in": lambda left, right: left not in right,
}


def _always(subject: Subject) -> bool:
    return True


def conditions_compile(conditions) -> Matcher:
    """`conditions` (already validated) as a function of the subject."""
    if not conditions:
        return _always
    if "all" in conditions or "any" in conditions:
        children = tuple(conditions_compile(child) for child in next(iter(conditions.values())))
        if "all" in conditions:
            def match_all(subject: Subject) -> bool:
                for child in children:
                    if not child(subject):
                        return False
                return True
            return match_all

        def match_any(subject: Subject) -> bool:
            for child in children:
                if child(subject):
                    return True
            return False
        return match_any
    return _leaf_compile(conditions)


def _leaf_compile(leaf: dict) -> Matcher:
    name, op = leaf["field"], leaf["op"]
    field = field_get(name)
    compare, right = COMPARE[op], leaf["value"]
    if op in ("in", "not_in"):
        right = frozenset(right)
    when_missing = op in ("ne", "not_in")  # no value: only "is not" matches
    get = field.get
    if name not in FIELDS:  # metadata: the key's value, as text
        key = name.rpartition(".")[2]
        metadata_of = get

        def get(subject: Subject):
            value = (metadata_of(subject) or {}).get(key)
            return None if value is None else str(value)

    if field.type == AMOUNT:
        currency_of, currency = field.currency, leaf.get("currency")

        def match_amount(subject: Subject) -> bool:
            # Another currency never matches: there is no stored rate to convert at.
            if currency_of(subject) != currency:
                return False
            value = get(subject)
            return when_missing if value is None else compare(value, right)
        return match_amount

    def match(subject: Subject) -> bool:
        value = get(subject)
        return when_missing if value is None else compare(value, right)
    return match


def conditions_match(conditions, subject: Subject) -> bool:
    return conditions_compile(conditions)(subject)


def conditions_describe(conditions) -> str:
    """The conditions in words, for the automation's one-sentence summary."""
    if not conditions:
        return ""
    if "all" in conditions or "any" in conditions:
        joiner = _(" and ") if "all" in conditions else _(" or ")
        parts = [conditions_describe(child) for child in next(iter(conditions.values()))]
        text = joiner.join(parts)
        return f"({text})" if len(parts) > 1 and "any" in conditions else text
    field = field_get(conditions["field"])
    label = field.label if conditions["field"] in FIELDS else conditions["field"]
    value = conditions["value"]
    if field.type == AMOUNT:
        from customers.money import format_money

        value = format_money(value, conditions["currency"], "en")
    elif isinstance(value, list):
        value = ", ".join(value)
    return f"{label} {OP_WORDS[conditions['op']]} {value}"
