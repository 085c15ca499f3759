"""The invoices admin through the test client: what finance staff see and can do."""

import re
from datetime import date, timedelta

import pytest
import time_machine
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from customers.admin import ROW_CHECKBOX_CLASSES
from customers.models import Customer
from invoices.models import CreditNote, Event, Invoice, InvoiceLine, InvoicingSettings, Payment
from invoices.services import invoice_record_payment

from .admin_forms import rows
from .factories import NOW, STAFF, make_customer, make_draft, make_open, make_tax_rate

S = Invoice.Status
CHANGELIST = reverse("admin:invoices_invoice_changelist")


@pytest.fixture(autouse=True)
def _frozen_time():
    # The admin reads the real clock (customers.clock): pin it to the factories' NOW.
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def change_url(obj):
    return reverse(f"admin:invoices_{obj._meta.model_name}_change", args=[obj.pk])


def op_url(invoice, name):
    return reverse(f"admin:invoices_invoice_{name}", args=[invoice.pk])


def messages_of(response):
    return [str(m) for m in response.context["messages"]] if response.context else []


def listed(response):
    return {row.pk for row in response.context["cl"].result_list}


def reload(obj):
    obj.refresh_from_db()
    return obj


# --- changelist ----------------------------------------------------------------------


def test_changelist_shows_numbers_drafts_money_and_status(staff_client):
    customer = make_customer(name="Acme", invoice_prefix="ACME")
    opened = make_open(customer, lines=((1, 12345),))
    draft = make_draft(customer)

    response = staff_client.get(CHANGELIST)

    body = response.content.decode()
    assert response.status_code == 200
    assert "ACME-0001" in body
    assert f"Draft #{draft.pk}" in body
    assert "€123.45" in body
    assert "Open" in body and "Draft" in body
    assert listed(response) == {opened.pk, draft.pk}


def test_changelist_filters(staff_client, admin_user):
    smb = make_customer(segment="smb", currency="EUR")
    enterprise = make_customer(segment="enterprise", currency="USD")
    draft = make_draft(smb)
    overdue = make_open(smb, due_date=date(2026, 3, 10))
    with time_machine.travel(NOW + timedelta(days=30), tick=False):
        current = make_open(
            enterprise, now=NOW + timedelta(days=30),
            collection_method=Invoice.CollectionMethod.CHARGE_AUTOMATICALLY,
        )
        staff_client.force_login(admin_user)  # the session would have expired meanwhile
        cases = {
            "status=draft": {draft.pk},
            "status=open": {overdue.pk, current.pk},
            "collection_method=charge_automatically": {current.pk},
            "currency=USD": {current.pk},
            "past_due=yes": {overdue.pk},
            "segment=smb": {draft.pk, overdue.pk},
            "segment=enterprise": {current.pk},
        }
        for query, expected in cases.items():
            response = staff_client.get(f"{CHANGELIST}?{query}")
            assert response.status_code == 200, query
            assert listed(response) == expected, query


def test_segment_filter_offers_the_segments_that_exist(staff_client):
    make_customer(segment="smb")
    make_customer(segment="enterprise")
    make_customer(segment="")

    response = staff_client.get(CHANGELIST)

    body = response.content.decode()
    assert "?segment=smb" in body and "?segment=enterprise" in body


def test_search_by_number_prefix_and_customer_name_or_email(staff_client):
    acme = make_customer(name="Acme Corp", email="ap@acme.test", invoice_prefix="ACME")
    globex = make_customer(name="Globex", email="billing@globex.test", invoice_prefix="GLOBEX")
    acme_invoice = make_open(acme)
    globex_invoice = make_open(globex)
    cases = {
        "ACME-0001": {acme_invoice.pk},
        "acme-00": {acme_invoice.pk},
        "GLOB": {globex_invoice.pk},
        "corp": {acme_invoice.pk},
        "globex.test": {globex_invoice.pk},
        ".test": {acme_invoice.pk, globex_invoice.pk},
        "nobody": set(),
    }
    for term, expected in cases.items():
        response = staff_client.get(CHANGELIST, {"q": term})
        assert listed(response) == expected, term


def test_search_within_a_segment(staff_client):
    acme = make_customer(name="Acme Corp", invoice_prefix="ACME", segment="smb")
    acme_big = make_customer(name="Acme Industries", invoice_prefix="ACMEIND", segment="enterprise")
    smb_invoice = make_open(acme)
    make_open(acme_big)

    response = staff_client.get(CHANGELIST, {"q": "acme", "segment": "smb"})

    assert listed(response) == {smb_invoice.pk}


def page_ids(client, **params) -> list[int]:
    response = client.get(CHANGELIST, params)
    assert response.status_code == 200, params
    return [row.pk for row in response.context["cl"].result_list]


@pytest.mark.parametrize("cap", [100, 4], ids=["few matches", "more than the count cap"])
def test_pages_hold_the_invoices_of_the_ordered_list(staff_client, monkeypatch, cap):
    """A page's ids are chosen first: by sorting the matches when the count says they are
    few, by walking the list's order otherwise. Either way, the same invoices as slicing
    the ordered list, also when sorted by another column."""
    monkeypatch.setattr("invoices.pagination.CAP", cap)
    monkeypatch.setattr(admin.site.get_model_admin(Invoice), "list_per_page", 2)
    customer = make_customer()
    for day, amount in enumerate([500, 300, 300, 900, 100, 700]):
        make_draft(customer, lines=((1, amount),), now=NOW - timedelta(days=day % 3))
    newest = list(Invoice.objects.order_by("-created_at", "-pk").values_list("pk", flat=True))
    largest = list(Invoice.objects.order_by("-total", "-pk").values_list("pk", flat=True))
    last = min(6, cap + 1)  # the count stops at cap + 1: the rows after are out of reach

    for ordering, expected in ((None, newest), ("-4", largest)):  # column 4: total
        params = {"o": ordering} if ordering else {}
        pages = [page_ids(staff_client, **params, p=page) for page in (1, 2, 3)[: (last + 1) // 2]]
        assert pages == [expected[i: min(i + 2, last)] for i in range(0, last, 2)], ordering


def test_a_deep_page_with_every_filter_and_a_search_stays_within_ten_queries(
    staff_client, admin_user, monkeypatch, django_assert_max_num_queries
):
    monkeypatch.setattr(admin.site.get_model_admin(Invoice), "list_per_page", 2)
    acme = make_customer(name="Acme Corp", segment="smb", currency="EUR")
    overdue = [make_open(acme, due_date=date(2026, 3, 10)) for _ in range(5)]
    query = {
        "q": "acme", "status__exact": "open", "collection_method__exact": "send_invoice",
        "currency": "EUR", "past_due": "yes", "segment": "smb", "p": 2,
    }
    with time_machine.travel(NOW + timedelta(days=30), tick=False):
        staff_client.force_login(admin_user)  # the session would have expired meanwhile

        with django_assert_max_num_queries(10):
            response = staff_client.get(CHANGELIST, query)

    assert [row.pk for row in response.context["cl"].result_list] == [
        invoice.pk for invoice in sorted(overdue, key=lambda i: i.pk, reverse=True)[2:4]
    ]


def test_changelist_queries_do_not_grow_with_rows(staff_client, django_assert_max_num_queries):
    segment_customer = make_customer(segment="smb")
    make_open(segment_customer)
    with CaptureQueriesContext(connection) as one_row:
        assert staff_client.get(CHANGELIST).status_code == 200
    for _ in range(29):
        make_open(make_customer(segment="smb"))

    with django_assert_max_num_queries(len(one_row.captured_queries)):
        response = staff_client.get(CHANGELIST)

    assert len(listed(response)) == 30


@pytest.mark.parametrize("model", [Invoice, Customer])
def test_changelist_templates_rendered_do_not_grow_with_rows(staff_client, model):
    """The theme labelled each row's cells by recomputing every column header (rendering the
    select-all checkbox through the widget templates) and included its row-actions template
    for each row: templates rendered per row, most of a 100-row list's CPU."""
    changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    make_open(make_customer())
    one_row = staff_client.get(changelist)
    for _ in range(9):
        make_open(make_customer())

    ten_rows = staff_client.get(changelist)

    assert len(listed(ten_rows)) == 10
    assert len(ten_rows.templates) == len(one_row.templates)
    assert ten_rows.content.count(b'id="action-toggle"') == 1


@pytest.mark.parametrize("model", [Invoice, Customer])
def test_changelist_never_counts_the_whole_table(staff_client, model):
    make_draft()
    changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")

    with CaptureQueriesContext(connection) as queries:
        staff_client.get(changelist)

    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"].upper()]
    assert counts and all("LIMIT" in sql.upper() for sql in counts)


def test_each_row_has_its_checkbox_for_bulk_actions(staff_client):
    invoice = make_open(make_customer(invoice_prefix="ACME"))

    body = staff_client.get(CHANGELIST).content.decode()

    assert (
        f'<input type="checkbox" name="_selected_action" value="{invoice.pk}" '
        f'class="{ROW_CHECKBOX_CLASSES}" '
        'aria-label="Select this object for an action - ACME-0001">'
    ).replace("'", "&#x27;") in body


def test_row_checkboxes_look_like_the_themes_select_all_box(staff_client):
    make_open(make_customer())

    body = staff_client.get(CHANGELIST).content.decode()

    toggle = re.search(r'<input type="checkbox"[^>]*id="action-toggle"[^>]*>', body).group()
    row = re.search(r'<input type="checkbox" name="_selected_action"[^>]*>', body).group()
    classes = re.compile(r'class="([^"]*)"')
    theme_look = set(classes.search(toggle).group(1).split()) - {"action-toggle"}
    assert theme_look <= set(classes.search(row).group(1).split())


# --- creating and editing drafts -------------------------------------------------------


def line_data(index, *, description="Consulting", quantity=1, unit_amount="100.00", tax_rates=(),
              line=None, delete=False, **extra):
    prefix = f"lines-{index}-"
    data = {
        "id": line.pk if line else "",
        "invoice": line.invoice_id if line else "",
        "description": description,
        "quantity": quantity,
        "unit_amount": unit_amount,
        "period_start": "",
        "period_end": "",
        "tax_rates": [rate.pk for rate in tax_rates],
        "discount_percent": "0",
        "discount_amount": "0",
        **extra,
    }
    if delete:
        data["DELETE"] = "on"
    return {prefix + key: value for key, value in data.items()}


def invoice_form(*lines, initial=0, **fields):
    data = {
        "collection_method": Invoice.CollectionMethod.SEND_INVOICE,
        "due_date": "",
        "days_until_due": "",
        "auto_advance": "on",
        "description": "",
        "footer": "",
        "discount_percent": "0",
        "discount_amount": "0",
        "lines-TOTAL_FORMS": len(lines),
        "lines-INITIAL_FORMS": initial,
        "lines-MIN_NUM_FORMS": 0,
        "lines-MAX_NUM_FORMS": 1000,
        **fields,
    }
    for line in lines:
        data.update(line)
    return data


def test_creating_an_invoice_goes_through_the_domain(staff_client):
    customer = make_customer(currency="JPY")
    data = invoice_form(
        line_data(0, quantity=3, unit_amount="1500"), customer=customer.pk, footer="Thank you"
    )

    response = staff_client.post(reverse("admin:invoices_invoice_add"), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    invoice = Invoice.objects.get()
    assert invoice.currency == "JPY"
    assert invoice.status == S.DRAFT and invoice.total == 4500 and invoice.footer == "Thank you"
    assert invoice.automatically_finalizes_at == NOW + timedelta(hours=1)
    assert Event.objects.filter(invoice=invoice, type="invoice.created").exists()


def test_creating_an_invoice_in_another_currency_is_refused(staff_client):
    customer = make_customer(currency="EUR")
    data = invoice_form(line_data(0), customer=customer.pk, invoice_currency="USD")

    response = staff_client.post(reverse("admin:invoices_invoice_add"), data)

    assert response.status_code == 200
    assert "is billed in EUR" in response.content.decode()
    assert not Invoice.objects.exists()


def test_editing_a_draft_saves_lines_and_recomputes_totals(staff_client):
    rate = make_tax_rate("20")
    draft = make_draft(lines=((1, 10000),))
    line = draft.lines.get()
    data = invoice_form(
        line_data(0, line=line, quantity=2, unit_amount="100.00", tax_rates=[rate]),
        line_data(1, description="Support", quantity=1, unit_amount="50.00"),
        initial=1, description="March work",
    )

    response = staff_client.post(change_url(draft), data)

    assert response.status_code == 302
    draft = reload(draft)
    assert draft.description == "March work"
    assert (draft.subtotal, draft.tax, draft.total) == (25000, 4000, 29000)
    assert draft.amount_remaining == 29000
    assert list(draft.lines.values_list("description", "position")) == [
        ("Consulting", 0), ("Support", 1),
    ]


def test_deleting_a_line_of_a_draft_recomputes_totals(staff_client):
    draft = make_draft(lines=((1, 10000), (1, 2500)))
    first, second = draft.lines.all()
    data = invoice_form(
        line_data(0, line=first), line_data(1, line=second, unit_amount="25.00", delete=True),
        initial=2,
    )

    response = staff_client.post(change_url(draft), data)

    assert response.status_code == 302
    assert reload(draft).total == 10000 and draft.lines.count() == 1


@pytest.mark.parametrize(
    "bad,message",
    [
        ({"quantity": -1}, "Quantity must be between 1 and 1,000,000."),
        ({"quantity": 5_000_000}, "Quantity must be between 1 and 1,000,000."),
        ({"unit_amount": "-5.00"}, "Amounts cannot be negative"),
        ({"unit_amount": "12.345"}, "EUR amounts have at most 2 decimal places."),
        ({"unit_amount": "twelve"}, "Enter an amount such as 12.50."),
        ({"unit_amount": "10000000000.00", "quantity": 100},
         "This line&#x27;s amount is too large."),
        ({"quantity": "abc"}, "Enter a whole number."),
        ({"period_start": "2026-03-31", "period_end": "2026-03-01"}, "The period ends before"),
    ],
)
def test_bad_line_input_is_refused_and_nothing_saved(staff_client, bad, message):
    draft = make_draft(lines=((1, 10000),))
    line = draft.lines.get()
    data = invoice_form(line_data(0, line=line, **bad), initial=1, description="changed")

    response = staff_client.post(change_url(draft), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    draft = reload(draft)
    assert draft.description == "" and draft.total == 10000
    assert (reload(line).quantity, line.unit_amount) == (1, 10000)


def test_mixed_inclusive_and_exclusive_tax_rates_on_a_line_are_refused(staff_client):
    draft = make_draft(lines=((1, 10000),))
    rates = [make_tax_rate("20", inclusive=True), make_tax_rate("5", inclusive=False)]
    data = invoice_form(line_data(0, line=draft.lines.get(), tax_rates=rates), initial=1)

    response = staff_client.post(change_url(draft), data)

    assert "all inclusive or all exclusive" in response.content.decode()
    assert reload(draft).tax == 0 and not draft.lines.get().tax_rates.exists()


def test_more_than_250_lines_are_refused(staff_client):
    draft = make_draft(lines=())
    lines = [line_data(i, unit_amount="1.00") for i in range(251)]

    response = staff_client.post(change_url(draft), invoice_form(*lines))

    assert "An invoice has at most 250 lines." in response.content.decode()
    assert not draft.lines.exists()


def test_an_invoice_total_too_large_is_refused_and_nothing_saved(staff_client):
    draft = make_draft(lines=((1, 10000),))
    huge = [line_data(i, quantity=1, unit_amount="90000000000.00") for i in range(2)]

    response = staff_client.post(change_url(draft), invoice_form(*huge), follow=True)

    assert "This invoice&#x27;s total is too large." in response.content.decode()
    assert reload(draft).total == 10000 and draft.lines.count() == 1


def test_a_finalized_invoice_accepts_only_memo_and_metadata(staff_client):
    invoice = make_open(lines=((1, 10000),))
    page = staff_client.get(change_url(invoice)).content.decode()
    assert 'name="description"' in page and 'name="metadata_key"' in page
    assert 'name="due_date"' not in page and 'name="lines-0-quantity"' not in page
    data = invoice_form(
        line_data(0, line=invoice.lines.get(), quantity=9), initial=1,
        description="Paid by wire", **rows("metadata", {"po": "42"}),
        due_date="2030-01-01", discount_amount="50.00",
    )

    response = staff_client.post(change_url(invoice), data)

    assert response.status_code == 302
    invoice = reload(invoice)
    assert invoice.description == "Paid by wire" and invoice.metadata == {"po": "42"}
    assert invoice.due_date == date(2026, 4, 1) and invoice.total == 10000
    assert invoice.discount_amount == 0 and invoice.lines.get().quantity == 1
    assert Event.objects.filter(invoice=invoice, type="invoice.updated").exists()


def test_drafts_can_be_deleted_but_finalized_invoices_cannot(staff_client):
    draft, opened = make_draft(), make_open()
    delete = lambda invoice: reverse("admin:invoices_invoice_delete", args=[invoice.pk])  # noqa: E731

    assert staff_client.get(delete(opened)).status_code == 403
    response = staff_client.post(delete(draft), {"post": "yes"})

    assert response.status_code == 302
    assert not Invoice.objects.filter(pk=draft.pk).exists()
    assert Invoice.objects.filter(pk=opened.pk).exists()
    assert Event.objects.filter(type="invoice.deleted", data__invoice_id=draft.pk).exists()


# --- object buttons ----------------------------------------------------------------------


def test_buttons_follow_the_allowed_transitions(staff_client):
    draft, opened = make_draft(), make_open()

    draft_page = staff_client.get(change_url(draft)).content.decode()
    open_page = staff_client.get(change_url(opened)).content.decode()

    assert op_url(draft, "finalize") in draft_page
    assert op_url(draft, "void") not in draft_page
    assert op_url(draft, "record_payment") not in draft_page
    assert op_url(opened, "finalize") not in open_page
    for name in ("void", "mark_uncollectible", "revise", "record_payment", "credit_note"):
        assert op_url(opened, name) in open_page


def test_buttons_need_the_permission(client, django_user_model):
    opened = make_open()
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    clerk.user_permissions.add(Permission.objects.get(codename="view_invoice"))
    client.force_login(clerk)

    page = client.get(change_url(opened)).content.decode()
    response = client.post(op_url(opened, "void"))

    assert op_url(opened, "void") not in page and op_url(opened, "record_payment") not in page
    assert response.status_code == 403
    assert client.get(op_url(opened, "record_payment")).status_code == 403
    assert reload(opened).status == S.OPEN


def test_finalize_button(staff_client):
    draft = make_draft(make_customer(invoice_prefix="ACME"))

    response = staff_client.post(op_url(draft, "finalize"), follow=True)

    assert "Finalized as ACME-0001." in messages_of(response)
    assert reload(draft).status == S.OPEN and draft.number == "ACME-0001"
    event = Event.objects.get(invoice=draft, type="invoice.finalized")
    assert event.actor_label == "admin"


def test_finalize_without_lines_shows_why(staff_client):
    draft = make_draft(lines=())

    response = staff_client.post(op_url(draft, "finalize"), follow=True)

    assert "Add at least one line before finalizing." in messages_of(response)
    assert reload(draft).status == S.DRAFT


def test_void_and_mark_uncollectible_buttons(staff_client):
    first, second = make_open(), make_open()

    staff_client.post(op_url(first, "void"))
    response = staff_client.post(op_url(second, "mark_uncollectible"), follow=True)

    assert reload(first).status == S.VOID
    assert reload(second).status == S.UNCOLLECTIBLE
    assert f"{second.number} marked uncollectible." in messages_of(response)


def test_voiding_a_paid_invoice_shows_the_reason_and_changes_nothing(staff_client):
    invoice = make_open(lines=((1, 10000),))
    invoice_record_payment(invoice, amount=10000, method="bank_transfer", now=NOW, actor=STAFF)
    events_before = Event.objects.count()

    response = staff_client.post(op_url(invoice, "void"), follow=True)

    assert "A paid invoice cannot be voided." in messages_of(response)
    assert reload(invoice).status == S.PAID
    assert Event.objects.count() == events_before


def test_buttons_only_accept_post(staff_client):
    invoice = make_open()

    assert staff_client.get(op_url(invoice, "void")).status_code == 405
    assert reload(invoice).status == S.OPEN


def test_revise_redirects_to_the_new_draft(staff_client):
    invoice = make_open(lines=((2, 5000),))

    response = staff_client.post(op_url(invoice, "revise"))

    copy = Invoice.objects.get(from_invoice=invoice)
    assert response.status_code == 302 and response.url == change_url(copy)
    assert reload(invoice).status == S.VOID
    assert copy.status == S.DRAFT and copy.total == 10000


# --- bulk actions --------------------------------------------------------------------------


def run_action(client, action, invoices):
    return client.post(
        CHANGELIST, {"action": action, "_selected_action": [i.pk for i in invoices]}, follow=True
    )


def test_bulk_finalize_reports_how_many(staff_client):
    drafts = [make_draft(), make_draft()]

    response = run_action(staff_client, "finalize_selected", drafts)

    numbers = ", ".join(reload(d).number for d in drafts)
    assert f"2 invoices finalized: {numbers}." in messages_of(response)
    assert {reload(d).status for d in drafts} == {S.OPEN}


def test_bulk_void_reports_each_failure_and_leaves_it_unchanged(staff_client):
    opened = make_open()
    paid = make_open(lines=((1, 500),))
    invoice_record_payment(paid, amount=500, method="cheque", now=NOW, actor=STAFF)
    empty_draft = make_draft(lines=())

    response = run_action(staff_client, "void_selected", [opened, paid, empty_draft])

    shown = messages_of(response)
    assert f"1 invoice voided: {opened.number}." in shown
    assert f"{paid.number}: A paid invoice cannot be voided." in shown
    assert f"Draft {empty_draft.pk}: A draft invoice cannot be voided." in shown
    assert reload(opened).status == S.VOID
    assert reload(paid).status == S.PAID and reload(empty_draft).status == S.DRAFT


def test_bulk_finalize_one_failure_does_not_stop_the_others(staff_client):
    good, empty = make_draft(), make_draft(lines=())

    response = run_action(staff_client, "finalize_selected", [good, empty])

    shown = messages_of(response)
    assert f"1 invoice finalized: {reload(good).number}." in shown
    assert any("Add at least one line" in m for m in shown)
    assert reload(good).status == S.OPEN and reload(empty).status == S.DRAFT


def test_bulk_mark_uncollectible_and_revise(staff_client):
    first, second = make_open(), make_open()

    run_action(staff_client, "mark_uncollectible_selected", [first])
    response = run_action(staff_client, "revise_selected", [second])

    assert reload(first).status == S.UNCOLLECTIBLE
    assert f"1 invoice voided and copied to a new draft: {second.number}." in messages_of(
        response)
    assert Invoice.objects.filter(from_invoice=second, status=S.DRAFT).exists()


def test_bulk_record_payment_opens_the_form_for_one_invoice(staff_client):
    first, second = make_open(), make_open()

    one = staff_client.post(CHANGELIST, {"action": "record_payment_selected",
                                         "_selected_action": [first.pk]})
    two = run_action(staff_client, "record_payment_selected", [first, second])

    assert one.status_code == 302 and one.url == op_url(first, "record_payment")
    assert "Select exactly one invoice for this action." in messages_of(two)


def test_bulk_delete_removes_drafts_only(staff_client):
    draft, opened = make_draft(), make_open()

    response = run_action(staff_client, "delete_selected_drafts", [draft, opened])

    assert "1 draft deleted." in messages_of(response)
    assert not Invoice.objects.filter(pk=draft.pk).exists()
    assert reload(opened).status == S.OPEN


# --- record payment ------------------------------------------------------------------------


def payment_form(amount, **fields):
    return {"amount": amount, "method": "bank_transfer", "received_at": "2026-03-01T10:00",
            "reference": "WIRE-1", **fields}


def test_record_payment_form_prefills_the_remaining_amount(staff_client):
    invoice = make_open(lines=((1, 12345),))

    response = staff_client.get(op_url(invoice, "record_payment"))

    assert response.status_code == 200
    assert 'value="123.45"' in response.content.decode()


def test_record_a_partial_then_the_full_payment(staff_client):
    invoice = make_open(lines=((1, 10000),))

    first = staff_client.post(op_url(invoice, "record_payment"), payment_form("12.50"), follow=True)
    staff_client.post(op_url(invoice, "record_payment"), payment_form("87.50"))

    assert "Payment of €12.50 recorded on" in messages_of(first)[0]
    invoice = reload(invoice)
    assert invoice.status == S.PAID and invoice.amount_paid == 10000
    assert list(Payment.objects.values_list("amount", flat=True).order_by("id")) == [1250, 8750]
    assert Payment.objects.first().reference == "WIRE-1"


@pytest.mark.parametrize(
    "amount,message",
    [
        ("12.345", "EUR amounts have at most 2 decimal places."),
        ("abc", "Enter an amount such as 12.50."),
        ("-5", "A payment is a positive amount."),
        ("0", "A payment is a positive amount."),
    ],
)
def test_malformed_payment_amounts_are_refused(staff_client, amount, message):
    invoice = make_open(lines=((1, 10000),))

    response = staff_client.post(op_url(invoice, "record_payment"), payment_form(amount))

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Payment.objects.exists() and reload(invoice).amount_paid == 0


def test_payment_in_the_future_is_refused(staff_client):
    invoice = make_open()

    response = staff_client.post(
        op_url(invoice, "record_payment"), payment_form("10", received_at="2026-04-01T10:00")
    )

    assert "A payment cannot be received in the future." in response.content.decode()
    assert not Payment.objects.exists()


def test_overpayment_needs_the_credit_box(staff_client):
    customer = make_customer()
    invoice = make_open(customer, lines=((1, 10000),))
    url = op_url(invoice, "record_payment")

    refused = staff_client.post(url, payment_form("120.00"))
    accepted = staff_client.post(url, payment_form("120.00", credit_excess="on"))

    assert "This payment is more than the €100.00 remaining." in refused.content.decode()
    assert accepted.status_code == 302
    assert reload(invoice).status == S.PAID
    assert Customer.objects.get(pk=customer.pk).balance == -2000


def test_payment_on_a_void_invoice_is_refused_with_the_reason(staff_client):
    invoice = make_open()
    staff_client.post(op_url(invoice, "void"))

    response = staff_client.post(op_url(invoice, "record_payment"), payment_form("10"))

    assert "Payments are recorded on open or uncollectible invoices" in response.content.decode()
    assert not Payment.objects.exists()


# --- credit notes ----------------------------------------------------------------------------


def credit_form(*lines, **fields):
    data = {
        "reason": "", "memo": "", "refund_amount": "", "credit_amount": "",
        "out_of_band_amount": "",
        "lines-TOTAL_FORMS": max(len(lines), 1), "lines-INITIAL_FORMS": 0,
        "lines-MIN_NUM_FORMS": 1, "lines-MAX_NUM_FORMS": 1000, **fields,
    }
    for index, line in enumerate(lines):
        data.update({f"lines-{index}-{key}": value for key, value in line.items()})
    return data


def test_credit_note_on_an_open_invoice_lowers_what_is_due(staff_client):
    invoice = make_open(lines=((1, 10000),))
    line = invoice.lines.get()
    data = credit_form(
        {"invoice_line": line.pk, "description": "", "amount": "30.00"},
        {"invoice_line": "", "description": "Goodwill", "amount": "5"},
        reason="order_change", memo="Partial delivery",
    )

    response = staff_client.post(op_url(invoice, "credit_note"), data, follow=True)

    note = CreditNote.objects.get()
    assert f"Credit note {note.number} created for €35.00." in messages_of(response)
    assert note.type == CreditNote.Type.PRE_PAYMENT and note.reason == "order_change"
    assert list(note.lines.values_list("description", flat=True)) == ["Consulting", "Goodwill"]
    assert reload(invoice).amount_remaining == 6500


def test_credit_note_exceeding_what_can_be_credited_is_refused(staff_client):
    invoice = make_open(lines=((1, 10000),))
    data = credit_form({"invoice_line": "", "description": "Too much", "amount": "100.01"})

    response = staff_client.post(op_url(invoice, "credit_note"), data)

    assert "At most €100.00 can still be credited" in response.content.decode()
    assert not CreditNote.objects.exists() and reload(invoice).amount_remaining == 10000


def test_credit_note_split_must_add_up(staff_client):
    customer = make_customer()
    invoice = make_open(customer, lines=((1, 10000),))
    invoice_record_payment(invoice, amount=10000, method="cheque", now=NOW, actor=STAFF)
    url = op_url(invoice, "credit_note")
    line = {"invoice_line": "", "description": "Refund", "amount": "40"}

    refused = staff_client.post(url, credit_form(line, refund_amount="10", credit_amount="20"))
    accepted = staff_client.post(url, credit_form(line, refund_amount="10", credit_amount="30"))

    assert "split it between refund" in refused.content.decode()
    assert accepted.status_code == 302
    note = CreditNote.objects.get()
    assert (note.type, note.refund_amount, note.credit_amount) == ("post_payment", 1000, 3000)
    assert Customer.objects.get(pk=customer.pk).balance == -3000


@pytest.mark.parametrize(
    "line,message",
    [
        ({"invoice_line": "", "description": "", "amount": "10"}, "Choose an invoice line"),
        ({"invoice_line": "", "description": "x", "amount": "1.001"}, "at most 2 decimal places"),
        ({"invoice_line": "", "description": "x", "amount": "-3"}, "positive amount"),
        ({"invoice_line": "", "description": "", "amount": ""}, "This field is required."),
    ],
)
def test_bad_credit_note_lines_are_refused(staff_client, line, message):
    invoice = make_open()

    response = staff_client.post(op_url(invoice, "credit_note"), credit_form(line))

    assert message in response.content.decode()
    assert not CreditNote.objects.exists()


def test_credit_note_void_button_and_bulk_action(staff_client):
    invoice = make_open(lines=((1, 10000),))
    for amount in ("10", "20"):
        staff_client.post(op_url(invoice, "credit_note"), credit_form(
            {"invoice_line": "", "description": "Credit", "amount": amount}
        ))
    first, second = CreditNote.objects.order_by("id")
    page = staff_client.get(change_url(first)).content.decode()
    assert reverse("admin:invoices_creditnote_void", args=[first.pk]) in page

    staff_client.post(reverse("admin:invoices_creditnote_void", args=[first.pk]))
    response = staff_client.post(
        reverse("admin:invoices_creditnote_changelist"),
        {"action": "void_selected", "_selected_action": [first.pk, second.pk]}, follow=True,
    )

    shown = messages_of(response)
    assert "1 credit note voided." in shown
    assert f"{first.number}: Credit note {first.number} is already void." in shown
    assert {reload(first).status, reload(second).status} == {CreditNote.Status.VOID}
    assert reload(invoice).amount_remaining == 10000


# --- timeline and the other screens -----------------------------------------------------------


def test_timeline_shows_events_newest_first_with_actor(staff_client):
    invoice = make_open()
    staff_client.post(op_url(invoice, "void"))

    body = staff_client.get(change_url(invoice)).content.decode()

    timeline = body[body.index('id="invoice-timeline"'):]
    assert timeline.index("Invoice voided") < timeline.index(f"Finalized as {invoice.number}")
    assert timeline.index("Finalized as") < timeline.index("Draft created")
    assert "admin" in timeline and "alice" in timeline
    # The raw event, one click away.
    assert '&quot;previous_status&quot;: &quot;open&quot;' in timeline


def test_read_only_lists_render(staff_client):
    invoice = make_open()
    invoice_record_payment(invoice, amount=500, method="cheque", now=NOW, actor=STAFF)
    staff_client.post(op_url(invoice, "credit_note"), credit_form(
        {"invoice_line": "", "description": "Credit", "amount": "1"}
    ))
    for name in ("payment", "creditnote", "event", "taxrate"):
        response = staff_client.get(reverse(f"admin:invoices_{name}_changelist"))
        assert response.status_code == 200, name
    payment_page = staff_client.get(reverse("admin:invoices_payment_changelist")).content.decode()
    assert "€5.00" in payment_page
    assert staff_client.get(reverse("admin:invoices_payment_add")).status_code == 403
    note = CreditNote.objects.get()
    assert "Credit" in staff_client.get(change_url(note)).content.decode()


def test_events_filter_by_type_and_search_by_invoice_number(staff_client):
    invoice = make_open(make_customer(invoice_prefix="ACME"))
    make_open(make_customer(invoice_prefix="GLOBEX"))
    url = reverse("admin:invoices_event_changelist")

    by_number = staff_client.get(url, {"q": "acme-0001"})
    by_type = staff_client.get(url, {"type": "invoice.finalized"})

    assert {e.invoice_id for e in by_number.context["cl"].result_list} == {invoice.pk}
    assert {e.type for e in by_type.context["cl"].result_list} == {"invoice.finalized"}
    assert len(by_type.context["cl"].result_list) == 2


def test_tax_rate_freezes_once_used_by_a_finalized_invoice(staff_client):
    used, unused = make_tax_rate("20"), make_tax_rate("10")
    make_open(lines=((1, 1000),), tax_rates=[used])

    used_page = staff_client.get(change_url(used)).content.decode()
    unused_page = staff_client.get(change_url(unused)).content.decode()
    staff_client.post(change_url(used), {"display_name": "VAT", "percentage": "5",
                                         "country": "", "category": "S", "active": "on"})

    assert 'name="percentage"' not in used_page and 'name="percentage"' in unused_page
    assert reload(used).percentage == 20
    delete = reverse("admin:invoices_taxrate_delete", args=[used.pk])
    assert staff_client.get(delete).status_code == 403


def test_invoicing_settings_is_a_single_screen(staff_client):
    response = staff_client.get(reverse("admin:invoices_invoicingsettings_changelist"))

    settings = InvoicingSettings.objects.get()
    assert response.status_code == 302 and response.url == change_url(settings)
    assert staff_client.get(reverse("admin:invoices_invoicingsettings_add")).status_code == 403
    delete = reverse("admin:invoices_invoicingsettings_delete", args=[settings.pk])
    assert staff_client.get(delete).status_code == 403


def test_lines_inline_keeps_queries_flat(staff_client, django_assert_max_num_queries):
    rate = make_tax_rate("20")
    small = make_draft(lines=((1, 100),), tax_rates=[rate])
    big = make_draft(lines=[(1, 100)] * 20, tax_rates=[rate])
    with CaptureQueriesContext(connection) as one_line:
        staff_client.get(change_url(small))

    with django_assert_max_num_queries(len(one_line.captured_queries)):
        response = staff_client.get(change_url(big))

    assert response.status_code == 200
    assert InvoiceLine.objects.filter(invoice=big).count() == 20


def test_past_the_count_cap_the_changelist_says_more_than(staff_client, monkeypatch):
    monkeypatch.setattr("invoices.pagination.CAP", 2)
    customer = make_customer()
    for _ in range(3):
        make_draft(customer)

    body = staff_client.get(CHANGELIST).content.decode()

    assert "More than 2 invoices" in body


def test_pages_render(staff_client):
    invoice = make_open()
    for url in (
        reverse("admin:invoices_invoice_add"), change_url(make_draft()), change_url(invoice),
        op_url(invoice, "record_payment"), op_url(invoice, "credit_note"),
    ):
        response = staff_client.get(url)
        assert response.status_code == 200, url


def test_row_links_carry_the_list_filters_as_django_makes_them(staff_client):
    from django.contrib.admin.templatetags.admin_urls import add_preserved_filters

    from customers.admin_base import row_link_with_filters

    opts = Invoice._meta
    change = reverse("admin:invoices_invoice_change", args=[42])
    for filters in ["", "_changelist_filters=status__exact%3Dopen%26q%3Da%2Bb%C3%A9",
                    "_changelist_filters=p%3D3"]:
        context = {"preserved_filters": filters, "opts": opts}
        assert row_link_with_filters(context, change) == add_preserved_filters(context, change)
    changelist = reverse("admin:invoices_invoice_changelist")  # not a row's link: Django's
    context = {"preserved_filters": "_changelist_filters=p%3D3", "opts": opts}
    assert row_link_with_filters(context, changelist) == f"{changelist}?p=3"

    make_open(make_customer(), lines=((1, 1000),))
    body = staff_client.get(changelist, {"status__exact": "open"}).content.decode()
    assert Invoice.objects.filter(status="open").exists()
    for pk in Invoice.objects.filter(status="open").values_list("pk", flat=True):
        link = reverse("admin:invoices_invoice_change", args=[pk])
        assert f'{link}?_changelist_filters=status__exact%3Dopen"' in body
