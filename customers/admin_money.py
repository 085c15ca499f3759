"""Amounts in the admin's lists, formatted as customers.money.format_money does, faster.

Babel formats an amount in ~40 us (with a currency name looked up and its plural rules
evaluated on every call, even when the pattern never shows the name): two amounts a row
made a fifth of a 100-row invoice list's CPU. What depends only on the currency and the
locale (the pattern's prefix and suffix with the symbol in place, the separators, the
grouping, the decimals) is read from Babel once per pair; an amount then costs the
integer arithmetic of its minor units. The result is Babel's own, character for
character (tests/test_admin_fast_list.py compares them over every currency and the
admin's languages); a pattern this does not handle (scientific, significant digits, a
scale, quotes in the text, the currency's name) is left to Babel.
"""

from functools import cache

from babel.numbers import (
    get_currency_precision,
    get_currency_symbol,
    get_decimal_symbol,
    get_group_symbol,
)

from .money import babel_locale, currency_exponent, format_money


class AmountFormat:
    """One (currency, locale) pair's formatting of amounts in minor units."""

    def __init__(self, currency: str, locale: str):
        babel = babel_locale(locale)
        pattern = babel.currency_formats["standard"]
        self.exponent = currency_exponent(currency)
        if (
            pattern.exp_prec or "@" in pattern.pattern or pattern.scale
            or pattern.number_pattern == "" or get_currency_precision(currency) != self.exponent
            or any("'" in part or "¤¤" in part for part in (*pattern.prefix, *pattern.suffix))
        ):
            raise ValueError("pattern left to Babel")
        symbol = get_currency_symbol(currency, babel)
        self.group = get_group_symbol(babel, numbering_system="latn")
        self.decimal = get_decimal_symbol(babel, numbering_system="latn")
        if "'" in symbol + self.group + self.decimal:  # Babel strips quotes in the text
            raise ValueError("pattern left to Babel")
        self.prefix = [part.replace("¤", symbol) for part in pattern.prefix]
        self.suffix = [part.replace("¤", symbol) for part in pattern.suffix]
        self.min_digits = pattern.int_prec[0]
        self.first_group, self.other_groups = pattern.grouping
        self.unit = 10**self.exponent

    def __call__(self, amount: int) -> str:
        negative = amount < 0
        whole, fraction = divmod(-amount if negative else amount, self.unit)
        digits = str(whole).rjust(self.min_digits, "0")
        size = self.first_group
        groups = ""
        while len(digits) > size:
            groups = self.group + digits[-size:] + groups
            digits = digits[:-size]
            size = self.other_groups
        number = digits + groups
        if self.exponent:
            number += self.decimal + str(fraction).rjust(self.exponent, "0")
        return self.prefix[negative] + number + self.suffix[negative]


@cache
def amount_format(currency: str, locale: str):
    try:
        return AmountFormat(currency, locale)
    except ValueError:
        return lambda amount: format_money(amount, currency, locale)


def format_amount(amount: int, currency: str, locale: str = "en") -> str:
    """format_money(amount, currency, locale), the same text."""
    if type(amount) is not int:
        return format_money(amount, currency, locale)
    return amount_format(currency, locale)(amount)
