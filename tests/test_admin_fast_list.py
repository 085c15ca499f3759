"""The invoice and customer lists' rows written by customers.admin_list and their amounts
by customers.admin_money (bench --only changelist): the same cells, links, badges and
amounts as the theme and Babel give, for representative rows."""

import re
from datetime import date, timedelta
from pathlib import Path

import pytest
import time_machine
import unfold
from django.contrib import admin
from django.template import Context, Engine
from django.template.loader import get_template
from django.test import RequestFactory
from django.urls import reverse
from django.utils import translation
from unfold.templatetags import unfold_list

from customers.admin_list import ListRows
from customers.admin_money import AmountFormat, amount_format, format_amount
from customers.ledger import balance_transaction_create
from customers.models import Customer
from customers.money import format_money, known_currencies
from invoices.models import Invoice
from invoices.services import invoice_mark_uncollectible, invoice_record_payment, invoice_void

from .factories import NOW, STAFF, make_customer, make_draft, make_open

INVOICES = reverse("admin:invoices_invoice_changelist")
CUSTOMERS = reverse("admin:customers_customer_changelist")


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW + timedelta(days=20), tick=False):
        yield


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def books():
    """Every status, past due and not, three currencies (two decimals, none), a credit
    balance, and names that need escaping."""
    acme = make_customer(name="Acme & <Sons>", invoice_prefix="ACME", segment="smb")
    yen = make_customer(name='Nippon "KK"', currency="JPY", invoice_prefix="NIP")
    dollars = make_customer(name="Initech", currency="USD", invoice_prefix="INI")
    make_draft(acme, lines=((3, 12345),))
    make_open(acme, due_date=date(2026, 3, 10))  # past due by the frozen clock (11 days)
    make_open(acme, due_date=date(2026, 4, 30))  # not yet due
    make_open(yen, lines=((1, 1500000),), due_date=date(2026, 3, 21))  # its first day
    invoice_void(make_open(dollars), now=NOW, actor=STAFF)
    invoice_mark_uncollectible(make_open(dollars, lines=((2, 99),)), now=NOW, actor=STAFF)
    paid = make_open(dollars, lines=((1, 123456789),))
    invoice_record_payment(paid, amount=paid.amount_remaining, method="bank_transfer",
                           now=NOW, actor=STAFF)
    partly = make_open(yen, lines=((1, 70000),))
    invoice_record_payment(partly, amount=2500, method="cash", now=NOW, actor=STAFF)
    balance_transaction_create(customer=dollars, amount=-1250, type="adjustment", now=NOW,
                               actor=STAFF)
    balance_transaction_create(customer=yen, amount=900, type="adjustment", now=NOW,
                               actor=STAFF)


def changelist_of(model, admin_user, **params):
    request = RequestFactory().get("/", params)
    request.user = admin_user
    return admin.site.get_model_admin(model).get_changelist_instance(request)


@pytest.mark.parametrize("language", ["en", "fr", "pt-br"])
@pytest.mark.parametrize(("model", "params"), [
    (Invoice, {}),
    (Invoice, {"status__exact": "open", "q": "acme"}),  # the row links keep the filters
    (Invoice, {"past_due": "yes", "o": "-4"}),
    (Customer, {}),
    (Customer, {"currency__exact": "USD"}),
], ids=["invoices", "invoices filtered", "invoices past due sorted", "customers",
        "customers filtered"])
def test_the_rows_cells_are_the_themes(books, admin_user, model, params, language):
    with translation.override(language):
        changelist = changelist_of(model, admin_user, **params)
        rows = ListRows(changelist)
        results = list(changelist.result_list)

        assert results
        for result in results:
            assert rows.cells(result) == list(
                unfold_list.items_for_result(changelist, result, None)
            ), result


def test_the_rows_show_the_badges_amounts_and_links(books, admin_user):
    changelist = changelist_of(Invoice, admin_user)
    cells = {
        str(invoice): "".join(ListRows(changelist).cells(invoice))
        for invoice in changelist.result_list
    }

    past_due = cells["ACME-0001"]
    assert '<span class="badge badge-open">Open</span>' in past_due
    assert '<span class="badge badge-past-due">Past due (11 days)</span>' in past_due
    assert 'data-label="customer">Acme &amp; &lt;Sons&gt;</td>' in past_due
    invoice = Invoice.objects.get(number="ACME-0001")
    assert f'<a href="/admin/invoices/invoice/{invoice.pk}/change/" ' in past_due
    assert "badge-past-due" not in cells["ACME-0002"]
    assert "Past due (0 days)" in cells["NIP-0001"]
    assert "¥1,500,000" in cells["NIP-0001"]
    assert "$1,234,567.89" in cells["INI-0003"] and "$0.00" in cells["INI-0003"]
    assert "badge-void" in cells["INI-0001"] and "badge-uncollectible" in cells["INI-0002"]
    assert any("€370.35" in row and "badge-draft" in row for row in cells.values())


def page_markup(body: bytes) -> bytes:
    """The page without its CSRF token (one per request) and the whitespace between tags
    (the fast rows are written without the template's indentation)."""
    body = re.sub(rb'name="csrfmiddlewaretoken" value="[^"]+"', b"", body)
    return re.sub(rb">\s+<", b"><", body)


@pytest.mark.parametrize("url", [INVOICES, CUSTOMERS])
@pytest.mark.parametrize("params", [{}, {"q": "a"}, {"_popup": "1", "_to_field": "id"}],
                         ids=["plain", "searched", "popup"])
def test_the_page_is_the_same_as_the_themes(books, staff_client, monkeypatch, url, params):
    fast = staff_client.get(url, params)
    for model in (Invoice, Customer):
        monkeypatch.setattr(admin.site.get_model_admin(model), "list_rows_fast", False)
    monkeypatch.setattr("customers.admin.format_amount", format_money)
    monkeypatch.setattr("invoices.admin.common.format_amount", format_money)

    theme = staff_client.get(url, params)

    assert fast.status_code == theme.status_code == 200
    assert len(fast.context["cl"].result_list) > 1
    assert page_markup(fast.content) == page_markup(theme.content)
    if "_popup" not in params:
        assert fast.content.count(b"<tbody") == theme.content.count(b"<tbody") > 2


def visible_markup(html: str) -> str:
    """Markup with its whitespace collapsed and none next to tags, as the theme's
    indentation adds it and a browser does not show it."""
    return re.sub(r"\s*(<[^>]+>)\s*", r"\1", re.sub(r"\s+", " ", html)).strip()


THEMES_APP_LIST = Path(unfold.__file__).parent / "templates" / "admin" / "app_list.html"


@pytest.mark.parametrize("language", ["en", "fr"])
@pytest.mark.parametrize("path", [INVOICES, CUSTOMERS, "/admin/", "/admin/invoices/"])
def test_the_sidebar_is_the_themes(admin_user, path, language):
    request = RequestFactory().get(path)
    request.user = admin_user
    with translation.override(language):
        context = {"app_list": admin.site.get_app_list(request), "request": request}
        ours = get_template("admin/app_list.html").render(context)
        themes = Engine.get_default().from_string(THEMES_APP_LIST.read_text()).render(
            Context(context)
        )

    assert "current-model" in ours or path in ("/admin/", "/admin/invoices/")
    assert visible_markup(ours.split("{% endcomment %}")[-1]) == visible_markup(themes)


def test_a_list_that_does_not_opt_in_is_the_themes(books, admin_user):
    changelist = changelist_of(Customer, admin_user)
    changelist.model_admin = type("Plain", (), {"list_rows_fast": False})()

    from customers.admin_list import list_rows

    assert list_rows(changelist) is None


@pytest.mark.parametrize("locale", ["en", "fr", "pt_BR", "de_CH", "hi_IN", "ar", "ja"])
def test_amounts_are_babels_in_every_currency(locale):
    amounts = [0, 1, -1, 7, 99, 100, -100, 1234, 100000, -1234567, 987654321, 10**13, -(10**13)]
    for currency in sorted(known_currencies()):
        for amount in amounts:
            assert format_amount(amount, currency, locale) == format_money(
                amount, currency, locale
            ), (currency, locale, amount)


def test_a_pattern_with_quoted_symbols_is_left_to_babel():
    # Swiss German groups with an apostrophe, which Babel's own formatting strips
    # when two of them appear: its text is kept, whatever it is.
    assert not isinstance(amount_format("CHF", "de_CH"), AmountFormat)
    assert isinstance(amount_format("EUR", "fr"), AmountFormat)
    assert format_amount(123456789, "CHF", "de_CH") == format_money(123456789, "CHF", "de_CH")
