"""Invoice totals: properties over random invoices, and hand-checked examples."""

import re
from decimal import Decimal
from fractions import Fraction
from html import unescape

import pytest
import time_machine
from django.urls import reverse
from django.utils import translation
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from automations.notifications.context import branding
from automations.notifications.context import invoice_context as email_invoice_context
from automations.notifications.kinds import KINDS
from automations.notifications.rendering import email_render
from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.money import percent_of
from invoices.credit_notes import (
    CreditLine,
    credit_note_create,
    credit_note_split,
    creditable_amount,
)
from invoices.documents.render import html_render, invoice_context, invoice_formats
from invoices.models import Branding
from invoices.services import (
    invoice_finalize,
    invoice_line_add,
    invoice_record_payment,
    invoice_void,
)
from invoices.totals import (
    LineInput,
    MixedTaxError,
    Rate,
    compute,
    invoice_summary,
    invoice_totals_shown,
    summary_settlement,
)

from .factories import NOW, STAFF, make_customer, make_draft, make_open, make_tax_rate

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
    if draw(st.integers(0, 5)) == 0:  # a proration credit: negative, no discount of its own
        return LineInput(quantity=1, unit_amount=draw(st.integers(-10**7, -1)),
                         rates=tuple(rates))
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
    if all(line.unit_amount >= 0 for line in given_lines):
        assert result.total >= 0 and result.tax >= 0
    else:  # with credits, an amount discount never takes the net amount below zero
        before = compute(given_lines, discount_percent, 0)
        net_before = before.subtotal - before.total_discount_amount
        net_after = result.subtotal - result.total_discount_amount
        assert net_after >= min(net_before, 0)
        assert net_after <= net_before


@property_settings
@given(invoices)
def test_discounts_never_make_a_line_negative_and_everything_is_int(invoice):
    given_lines, discount_percent, discount_amount = invoice

    result = compute(given_lines, discount_percent, discount_amount)

    mixed = any(line.unit_amount < 0 for line in given_lines)
    for line in result.lines:
        values = [line.amount, line.discount_total, line.amount_excluding_tax, line.tax_amount]
        assert all(type(value) is int for value in values)
        if line.amount < 0:  # a credit is discounted by the invoice's percent only
            assert line.amount <= line.discount_total <= 0
            continue
        assert 0 <= line.discount_total <= line.amount
        if not mixed:
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


# --- what customers read: the page, the PDF, the emails and the admin agree ----------------

STRONG_OR_NOT = r"(?:<strong>)?(.*?)(?:</strong>)?"
ROW = re.compile(rf"<td>{STRONG_OR_NOT}</td>\s*<td[^>]*>{STRONG_OR_NOT}</td>", re.S)


def table_rows(html: str, opening: str) -> list[tuple[str, str]]:
    table = html[html.index(opening):]
    table = table[:table.index("</table>")]
    return [(unescape(label).strip(), unescape(amount).strip())
            for label, amount in ROW.findall(table)]


def page_rows(client, invoice):
    with time_machine.travel(NOW, tick=False):
        response = client.get(hosted_path(invoice))
    assert response.status_code == 200
    return table_rows(response.content.decode(), '<table class="totals">')


def pdf_rows(invoice):
    formats = invoice_formats(invoice)
    html = html_render("documents/invoice.html", invoice_context, invoice, Branding.load(),
                       formats=formats)
    rows = table_rows(html, '<table class="totals">')
    return [row for row in rows if row[0] != "Total excluding tax"]


def email_rows(invoice):
    context = {**branding(), **email_invoice_context(
        invoice, "en", KINDS["invoice_finalized"].variables
    )}
    text = email_render("invoice_finalized", "en", context).text
    return [tuple(line.rsplit(": ", 1)) for line in text.splitlines()
            if ": " in line and not line.startswith(("Questions", "http"))]


def admin_rows(client, invoice):
    response = client.get(reverse("admin:invoices_invoice_change", args=[invoice.pk]))
    assert response.status_code == 200
    return table_rows(response.content.decode(), '<table class="invoice-totals">')


def hosted_path(invoice):
    from invoices.hosted import token_for

    return f"/i/{token_for(invoice)}/"


steps = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.integers(1, 30_000), st.booleans()),
        st.tuples(st.just("credit_note"), st.integers(1, 30_000), st.integers(0, 2)),
        st.tuples(st.just("void")),
    ),
    max_size=6,
)
shown_invoices = st.fixed_dictionaries({
    "balance": st.one_of(st.just(0), st.integers(-40_000, 40_000)),
    "lines": st.lists(st.integers(1, 20_000), min_size=1, max_size=3),
    "credit": st.one_of(st.just(0), st.integers(1, 40_000)),  # a proration credit line
    "discount": st.one_of(st.just(0), st.integers(0, 5_000)),
    "taxed": st.booleans(),
    "steps": steps,
})


def shown_invoice_build(spec, tax_rate):
    customer = make_customer()
    if spec["balance"]:
        balance_transaction_create(customer=customer, amount=spec["balance"], type="adjustment",
                                   now=NOW, actor=STAFF)
    rates = (tax_rate,) if spec["taxed"] else ()
    invoice = make_draft(customer, lines=[(1, amount) for amount in spec["lines"]],
                         discount_amount=spec["discount"], tax_rates=rates)
    if spec["credit"]:
        invoice_line_add(invoice, description="Unused time", unit_amount=-spec["credit"],
                         proration=True, tax_rates=rates)
    invoice = invoice_finalize(invoice, now=NOW, actor=STAFF)
    for kind, *args in spec["steps"]:
        invoice.refresh_from_db()
        try:
            if kind == "pay":
                invoice_record_payment(invoice, amount=args[0], method="bank_transfer", now=NOW,
                                       actor=STAFF, credit_excess=args[1])
            elif kind == "credit_note":
                amount = min(args[0], creditable_amount(invoice))
                post = credit_note_split(invoice, amount)[1] if amount else 0
                credit, out_of_band, refund = [(post, 0, 0), (0, post, 0), (0, 0, post)][args[1]]
                credit_note_create(invoice, lines=[CreditLine(amount=amount)], now=NOW,
                                   actor=STAFF, credit_amount=credit,
                                   out_of_band_amount=out_of_band, refund_amount=refund)
            else:
                invoice_void(invoice, now=NOW, actor=STAFF)
        except DomainError:
            pass
    invoice.refresh_from_db()
    return invoice


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@settings(max_examples=20, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=shown_invoices)
def test_page_pdf_emails_and_admin_show_the_same_rows_and_they_add_up(spec, staff_client):
    translation.activate("en")
    invoice = shown_invoice_build(spec, make_tax_rate("20"))

    received = sum(invoice.payments.values_list("amount", flat=True))
    summary = invoice_summary(invoice, received=received)
    settlement = summary_settlement(summary)

    # the rows add up: subtotal to total, and total to the amount due
    assert sum(row.amount for row in summary[:summary.index(settlement[0])]) == invoice.total
    assert sum(row.amount for row in settlement[:-1]) == settlement[-1].amount
    assert settlement[-1].amount == (0 if invoice.status == "void" else invoice.amount_remaining)
    # the four readers show these same rows
    expected = [(row.label, row.amount) for row in invoice_totals_shown(invoice, locale="en")]
    assert page_rows(staff_client, invoice) == expected
    assert pdf_rows(invoice) == expected
    assert admin_rows(staff_client, invoice) == expected
    assert email_rows(invoice) == expected[-len(settlement):]


def test_a_balance_and_a_credit_note_are_each_shown_once(staff_client):
    """The probe's invoice: 4,750.00 with 500.00 of credit note and 2,000.00 paid (no
    balance): the page showed the credit note twice (once as balance applied)."""
    translation.activate("en")
    customer = make_customer(currency="USD")
    invoice = make_open(customer, lines=[(1, 475_000)])
    credit_note_create(invoice, lines=[CreditLine(amount=50_000)], now=NOW, actor=STAFF)
    invoice_record_payment(invoice, amount=200_000, method="bank_transfer", now=NOW, actor=STAFF)
    invoice.refresh_from_db()

    rows = page_rows(staff_client, invoice)

    assert rows[-4:] == [("Total", "$4,750.00"), ("Credit notes", "-$500.00"),
                         ("Amount paid", "-$2,000.00"), ("Amount due", "$2,250.00")]
