"""Tax id types (Stripe's names) and how each is checked: python-stdnum where a format
exists. A type without a module is kept as typed, trimmed."""

from dataclasses import dataclass
from importlib import import_module

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _


@dataclass(frozen=True)
class TaxIdType:
    label: Promise | str
    module: str | None  # a python-stdnum module with validate(), or None
    prefix: str = ""  # put back in front of the compact number (GB VAT)


TAX_ID_TYPES = {
    "eu_vat": TaxIdType(_("EU VAT number"), "stdnum.eu.vat"),
    "gb_vat": TaxIdType(_("UK VAT number"), "stdnum.gb.vat", prefix="GB"),
    "ch_vat": TaxIdType(_("Swiss VAT number"), "stdnum.ch.vat"),
    "no_vat": TaxIdType(_("Norwegian VAT number"), "stdnum.no.mva"),
    "br_cnpj": TaxIdType(_("Brazilian CNPJ"), "stdnum.br.cnpj"),
    "br_cpf": TaxIdType(_("Brazilian CPF"), "stdnum.br.cpf"),
    "us_ein": TaxIdType(_("US EIN"), "stdnum.us.ein"),
    "ca_bn": TaxIdType(_("Canadian BN"), "stdnum.ca.bn"),
    "au_abn": TaxIdType(_("Australian ABN"), "stdnum.au.abn"),
    "in_gst": TaxIdType(_("Indian GSTIN"), "stdnum.in_.gstin"),
    "mx_rfc": TaxIdType(_("Mexican RFC"), "stdnum.mx.rfc"),
    "other": TaxIdType(_("Other tax id"), None),
}


def tax_id_normalize(kind: str, value: str) -> str:
    """The number in its compact form; raises stdnum's ValidationError when its format
    or check digits are wrong."""
    tax_id = TAX_ID_TYPES[kind]
    if tax_id.module is None:
        return value.strip()
    compact = import_module(tax_id.module).validate(value)
    if tax_id.prefix and not compact.startswith(tax_id.prefix):
        compact = tax_id.prefix + compact
    return compact
