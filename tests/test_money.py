from decimal import Decimal
from fractions import Fraction

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from customers.money import allocate, currency_exponent, format_money, round_minor, to_minor


def test_real_exponents():
    assert (currency_exponent("EUR"), currency_exponent("JPY"), currency_exponent("KWD")) == (
        2,
        0,
        3,
    )


def test_round_half_away_from_zero():
    assert [round_minor(Fraction(x, 2)) for x in (1, 3, 5, -1, -3)] == [1, 2, 3, -1, -2]
    assert round_minor(Decimal("2.4999")) == 2


def test_format_in_reader_locale():
    assert format_money(123456, "EUR", "fr") == "1\u202f234,56\xa0€"
    assert format_money(123456, "EUR", "en") == "€1,234.56"
    assert format_money(1000, "JPY", "en") == "¥1,000"
    assert format_money(1500, "BRL", "pt-BR") == "R$\xa015,00"


def test_parse_amounts_typed_by_people():
    assert to_minor("12.50", "EUR") == 1250
    assert to_minor("1.234", "KWD") == 1234
    with pytest.raises(ValidationError):
        to_minor("12.5", "JPY")
    with pytest.raises(ValidationError):
        to_minor("abc", "EUR")
    with pytest.raises(ValidationError):
        to_minor("1e30", "EUR")


@given(st.integers(-(10**12), 10**12), st.lists(st.integers(0, 10**9), min_size=1, max_size=50))
def test_allocate_is_exact_and_proportional(total, weights):
    shares = allocate(total, weights)
    if sum(weights) == 0:
        assert shares == [0] * len(weights)
        return
    assert sum(shares) == total
    for share, weight in zip(shares, weights, strict=True):
        assert abs(share - Fraction(total * weight, sum(weights))) < 1
