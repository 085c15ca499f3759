"""Invoice totals: properties over random invoices, and hand-checked examples."""

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from customers.money import percent_of
from invoices.totals import LineInput, MixedTaxError, Rate, compute

EXCLUSIVE = [Rate(1, Decimal("20"), False, "VAT"), Rate(2, Decimal("5.5"), False, "VAT reduced"),
             Rate(3, Decimal("8.875"), False, "Sales tax")]
INCLUSIVE = [Rate(11, Decimal("19"), True, "MwSt"), Rate(12, Decimal("7.25"), True, "Local tax")]

percents = st.decimals(min_value=0, max_value=100, places=4)
small_percents = st.one_of(st.just(Decimal(0)), percents)


@st.composite
def lines(draw):
    kind = draw(st.sampled_from(["none", "exclusive", "inclusive"]))
    pool = {"none": [], "exclusive": EXCLUSIVE, "inclusive": INCLUSIVE}[kind]
    rates = draw(st.lists(st.sampled_from(pool), unique=True, max_size=len(pool))) if pool else []
    return LineInput(
        quantity=draw(st.integers(1, 1000)),
        unit_amount=draw(st.integers(0, 10**7)),
        rates=tuple(rates),
        discount_percent=draw(small_percents),
        discount_amount=draw(st.one_of(st.just(0), st.integers(0, 10**8))),
    )


invoices = st.tuples(
    st.lists(lines(), min_size=1, max_size=12),
    small_percents,
    st.one_of(st.just(0), st.integers(0, 10**9)),
)

property_settings = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@property_settings
@given(invoices)
def test_totals_add_up(invoice):
    given_lines, discount_percent, discount_amount = invoice

    result = compute(given_lines, discount_percent, discount_amount)

    exclusive_tax = sum(row["amount"] for row in result.tax_breakdown if not row["inclusive"])
    assert result.total == result.total_excluding_tax + result.tax
    assert result.total == result.subtotal - result.total_discount_amount + exclusive_tax
    assert sum(line.tax_amount for line in result.lines) == result.tax
    assert sum(row["amount"] for row in result.tax_breakdown) == result.tax
    assert sum(line.amount_excluding_tax for line in result.lines) == result.total_excluding_tax
    assert sum(line.discount_total for line in result.lines) == result.total_discount_amount
    assert result.subtotal == sum(line.quantity * line.unit_amount for line in given_lines)
    assert result.total >= 0 and result.tax >= 0


@property_settings
@given(invoices)
def test_discounts_never_make_a_line_negative_and_everything_is_int(invoice):
    given_lines, discount_percent, discount_amount = invoice

    result = compute(given_lines, discount_percent, discount_amount)

    for line in result.lines:
        values = [line.amount, line.discount_total, line.amount_excluding_tax, line.tax_amount]
        assert all(type(value) is int for value in values)
        assert 0 <= line.discount_total <= line.amount
        assert line.amount_excluding_tax >= 0 and line.tax_amount >= 0
    for name in ["subtotal", "total_discount_amount", "total_excluding_tax", "tax", "total"]:
        assert type(getattr(result, name)) is int
    for row in result.tax_breakdown:
        assert type(row["amount"]) is int and type(row["taxable_amount"]) is int


@property_settings
@given(invoices)
def test_each_exclusive_rate_is_taxed_once_on_the_sum_of_its_lines(invoice):
    given_lines, discount_percent, discount_amount = invoice

    result = compute(given_lines, discount_percent, discount_amount)

    nets = [line.amount - line.discount_total for line in result.lines]
    for rate in EXCLUSIVE:
        members = [i for i, line in enumerate(given_lines) if rate in line.rates]
        row = next((r for r in result.tax_breakdown if r["tax_rate"] == rate.id), None)
        if not members:
            assert row is None
            continue
        taxable = sum(nets[i] for i in members)
        assert row["taxable_amount"] == taxable
        assert row["amount"] == percent_of(taxable, rate.percentage)


@property_settings
@given(invoices)
def test_inclusive_prices_are_what_the_customer_pays(invoice):
    given_lines, discount_percent, discount_amount = invoice

    result = compute(given_lines, discount_percent, discount_amount)

    for given_line, line in zip(given_lines, result.lines, strict=True):
        net = line.amount - line.discount_total
        if any(rate.inclusive for rate in given_line.rates):
            # the tax is inside the price: net = excl + tax, and excl is the exact share
            assert line.amount_excluding_tax + line.tax_amount == net
            combined = sum(Fraction(rate.percentage) for rate in given_line.rates)
            exact = Fraction(net) * 100 / (100 + combined)
            assert abs(line.amount_excluding_tax - exact) <= Fraction(1, 2)


# --- hand-checked examples --------------------------------------------------------------


def test_three_times_33_33_eur_at_20_percent():
    result = compute([LineInput(3, 3333, (EXCLUSIVE[0],))])
    assert (result.subtotal, result.tax, result.total) == (9999, 2000, 11999)  # 19.998 -> 20.00


def test_inclusive_19_percent_on_119_00_is_100_00_plus_19_00():
    result = compute([LineInput(1, 11900, (INCLUSIVE[0],))])
    assert (result.total_excluding_tax, result.tax, result.total) == (10000, 1900, 11900)
    assert result.tax_breakdown[0]["taxable_amount"] == 10000


def test_amount_discount_is_split_exactly_across_lines():
    result = compute(
        [LineInput(1, 1000), LineInput(1, 2000), LineInput(1, 3000)], discount_amount=1000
    )
    # 1000 x 1/6, 2/6, 3/6 = 166.67, 333.33, 500: the leftover cent goes to the largest remainder
    assert [line.discount_total for line in result.lines] == [167, 333, 500]
    assert result.total_discount_amount == 1000 and result.total == 5000


def test_an_amount_discount_larger_than_the_invoice_stops_at_zero():
    result = compute([LineInput(2, 500)], discount_amount=5000)
    assert (result.total_discount_amount, result.total) == (1000, 0)


def test_line_then_invoice_discounts():
    # 100.00 - 10 % (line) = 90.00; - 50 % (invoice) = 45.00; - 5.00 (invoice amount) = 40.00
    result = compute(
        [LineInput(1, 10000, discount_percent=Decimal(10))],
        discount_percent=Decimal(50), discount_amount=500,
    )
    assert result.total == 4000 and result.total_discount_amount == 6000


def test_jpy_has_no_minor_unit():
    result = compute([LineInput(3, 333, (Rate(4, Decimal("10"), False),))])  # 3 x ¥333 at 10 %
    assert (result.subtotal, result.tax, result.total) == (999, 100, 1099)  # ¥99.9 -> ¥100


def test_kwd_has_three_decimals():
    result = compute([LineInput(1, 1234, (Rate(5, Decimal("5"), False),))])  # 1.234 KWD at 5 %
    assert (result.tax, result.total) == (62, 1296)  # 0.0617 -> 0.062


def test_exclusive_tax_is_rounded_once_per_rate_not_per_line():
    # three lines of 1.05 at 10 %: per line 0.105 -> 0.11 would make 0.33; on the sum, 0.32
    result = compute([LineInput(1, 105, (Rate(6, Decimal("10"), False),))] * 3)
    assert result.tax == 32
    assert sorted(line.tax_amount for line in result.lines) == [10, 11, 11]


def test_two_inclusive_rates_share_the_tax_by_percentage():
    result = compute([LineInput(1, 12625, tuple(INCLUSIVE))])  # 100.00 + 19 % + 7.25 %
    assert (result.total_excluding_tax, result.tax) == (10000, 2625)
    assert {row["tax_rate"]: row["amount"] for row in result.tax_breakdown} == {11: 1900, 12: 725}


def test_a_line_with_inclusive_and_exclusive_rates_is_refused():
    with pytest.raises(MixedTaxError):
        compute([LineInput(1, 1000, (EXCLUSIVE[0], INCLUSIVE[0]))])
