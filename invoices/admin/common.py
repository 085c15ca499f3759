"""Pieces shared by the invoices admin screens."""


from django.contrib import admin, messages
from django.urls import reverse
from django.utils.translation import get_language, to_locale
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.admin import (  # noqa: F401  (shared)
    DomainRefusalAdmin,
    QuickCheckboxMixin,
    ReadOnlyAdmin,
    SingletonAdmin,
)
from customers.admin_base import ModelAdmin, TabularInline  # noqa: F401  (shared)
from customers.admin_money import format_amount


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "—"
    return format_amount(amount, currency, to_locale(get_language() or "en"))


def staff(request) -> Actor:
    return Actor.staff(request.user)


def change_url(obj) -> str:
    opts = obj._meta
    return reverse(f"admin:{opts.app_label}_{opts.model_name}_change", args=[obj.pk])


def report_failures(request, failures: list[tuple[object, str]]) -> None:
    for obj, reason in failures:
        messages.error(request, _("%(object)s: %(reason)s") % {"object": obj, "reason": reason})


def data_summary(data: dict, limit: int = 120) -> str:
    text = ", ".join(f"{key}: {value}" for key, value in (data or {}).items())
    return text if len(text) <= limit else text[: limit - 1] + "…"




def may(request, codename: str) -> bool:
    return request.user.has_perm(f"invoices.{codename}")


def money_column(name: str, label, *, sortable: bool = False):
    """A list/detail column showing the amount field `name` in the object's currency."""

    @admin.display(description=label, ordering=name if sortable else None)
    def column(self, obj):
        return money(getattr(obj, name), obj.currency)

    return column
