"""The staff groups made by the migration, as their members meet them in the admin."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from customers.models import BalanceTransaction, Customer, TestClock
from invoices.models import CreditNote, Invoice, InvoicingSettings, Payment

from .factories import NOW, make_customer, make_draft, make_open

S = Invoice.Status


@pytest.fixture
def as_member(client, django_user_model):
    """Log the test client in as a staff user in `group`."""

    def login(group: str):
        user = django_user_model.objects.create_user(
            username=group.lower().replace(" ", "-"), password="pw-staff-123", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def acme():
    return make_customer(name="Acme", invoice_prefix="ACME", currency="EUR")


def url(name, *args):
    return reverse(f"admin:{name}", args=args)


def page(client, name, *args):
    response = client.get(url(name, *args))
    return response.status_code, response.content.decode()


def payment_form(amount="40.00"):
    return {
        "amount": amount, "method": "bank_transfer",
        "received_at": (NOW + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M"), "reference": "TR-1",
    }


def credit_note_form(amount="10.00"):
    return {
        "reason": "order_change", "memo": "", "refund_amount": "", "credit_amount": "",
        "out_of_band_amount": "",
        "lines-TOTAL_FORMS": "1", "lines-INITIAL_FORMS": "0",
        "lines-MIN_NUM_FORMS": "1", "lines-MAX_NUM_FORMS": "1000",
        "lines-0-invoice_line": "", "lines-0-description": "Discount agreed",
        "lines-0-amount": amount,
    }


def test_the_migration_made_the_three_groups():
    assert set(Group.objects.values_list("name", flat=True)) >= {
        "Finance admin", "Collections agent", "Auditor",
    }


# --- Finance admin: everything ---


def test_finance_admin_runs_the_whole_back_office(as_member, acme):
    client = as_member("Finance admin")
    draft = make_draft(acme)
    clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)

    for name, args in [
        ("customers_customer_add", ()),
        ("customers_customer_adjust_balance", (acme.pk,)),
        ("automations_testclock_advance", (clock.pk,)),
        ("django_celery_beat_periodictask_changelist", ()),
    ]:
        assert page(client, name, *args)[0] == 200, name
    _status, draft_page = page(client, "invoices_invoice_change", draft.pk)
    assert url("invoices_invoice_finalize", draft.pk) in draft_page
    _status, settings_page = page(client, "invoices_invoicingsettings_change", 1)
    assert 'name="_save"' in settings_page

    client.post(url("invoices_invoice_finalize", draft.pk))
    assert Invoice.objects.get(pk=draft.pk).status == S.OPEN


# --- Collections agent: view, record payments, credit notes ---


def test_collections_agent_sees_payment_and_credit_note_buttons_only(as_member, acme):
    client = as_member("Collections agent")
    invoice = make_open(acme)

    status, invoice_page = page(client, "invoices_invoice_change", invoice.pk)

    assert status == 200
    assert url("invoices_invoice_record_payment", invoice.pk) in invoice_page
    assert url("invoices_invoice_credit_note", invoice.pk) in invoice_page
    for forbidden in ("void", "mark_uncollectible", "revise"):
        assert url(f"invoices_invoice_{forbidden}", invoice.pk) not in invoice_page
    assert 'name="_save"' not in invoice_page


def test_collections_agent_records_a_payment(as_member, acme):
    client = as_member("Collections agent")
    invoice = make_open(acme, lines=((1, 10000),))

    response = client.post(
        url("invoices_invoice_record_payment", invoice.pk), payment_form("40.00")
    )

    assert response.status_code == 302
    invoice.refresh_from_db()
    assert (invoice.amount_paid, invoice.amount_remaining) == (4000, 6000)
    assert Payment.objects.get().reference == "TR-1"


def test_collections_agent_creates_a_credit_note(as_member, acme):
    client = as_member("Collections agent")
    invoice = make_open(acme, lines=((1, 10000),))

    response = client.post(
        url("invoices_invoice_credit_note", invoice.pk), credit_note_form("10.00")
    )

    assert response.status_code == 302
    note = CreditNote.objects.get()
    assert (note.number, note.amount) == (f"{invoice.number}-CN-01", 1000)


def test_collections_agent_cannot_finalize_void_or_edit_invoices(as_member, acme):
    client = as_member("Collections agent")
    draft, invoice = make_draft(acme), make_open(acme)

    assert url("invoices_invoice_finalize", draft.pk) not in page(
        client, "invoices_invoice_change", draft.pk
    )[1]
    assert client.post(url("invoices_invoice_finalize", draft.pk)).status_code == 403
    assert client.post(url("invoices_invoice_void", invoice.pk)).status_code == 403
    assert client.post(
        url("invoices_invoice_change", draft.pk), {"description": "changed"}
    ).status_code == 403

    assert Invoice.objects.get(pk=draft.pk).status == S.DRAFT
    assert Invoice.objects.get(pk=invoice.pk).status == S.OPEN
    assert Invoice.objects.get(pk=draft.pk).description == ""


def test_collections_agent_reads_settings_but_cannot_change_them(as_member):
    client = as_member("Collections agent")
    settings = InvoicingSettings.load()

    status, settings_page = page(client, "invoices_invoicingsettings_change", settings.pk)
    response = client.post(
        url("invoices_invoicingsettings_change", settings.pk),
        {"numbering": "account", "account_prefix": "HACK", "auto_finalize_delay_hours": "5",
         "default_days_until_due": "1"},
    )

    assert status == 200 and 'name="_save"' not in settings_page
    assert response.status_code == 403
    settings.refresh_from_db()
    assert (settings.numbering, settings.account_prefix) == ("customer", "INV")
    assert page(client, "django_celery_beat_periodictask_changelist")[0] == 403


def test_collections_agent_cannot_touch_customers_balances_or_clocks(as_member, acme):
    client = as_member("Collections agent")
    clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)

    status, customer_page = page(client, "customers_customer_change", acme.pk)
    assert status == 200 and "Adjust balance" not in customer_page
    assert page(client, "customers_customer_add")[0] == 403
    adjusted = client.post(
        url("customers_customer_adjust_balance", acme.pk),
        {"direction": "credit", "amount": "10", "description": "x"},
    )
    advanced = client.post(url("automations_testclock_advance", clock.pk), {"quick": "1"})

    assert (adjusted.status_code, advanced.status_code) == (403, 403)
    assert not BalanceTransaction.objects.exists()
    clock.refresh_from_db()
    assert clock.frozen_time == NOW


# --- Auditor: view only ---


@pytest.mark.parametrize(
    "name",
    [
        "customers_customer_changelist", "customers_balancetransaction_changelist",
        "customers_testclock_changelist", "invoices_invoice_changelist",
        "invoices_payment_changelist", "invoices_creditnote_changelist",
        "invoices_event_changelist",
    ],
)
def test_auditor_reads_every_list(as_member, acme, name):
    make_open(acme)

    assert page(as_member("Auditor"), name)[0] == 200


def test_auditor_changes_nothing(as_member, acme):
    client = as_member("Auditor")
    invoice = make_open(acme)

    status, invoice_page = page(client, "invoices_invoice_change", invoice.pk)
    assert status == 200
    assert url("invoices_invoice_record_payment", invoice.pk) not in invoice_page
    assert url("invoices_invoice_credit_note", invoice.pk) not in invoice_page
    assert "Adjust balance" not in page(client, "customers_customer_change", acme.pk)[1]

    for name, data in [
        ("invoices_invoice_record_payment", payment_form()),
        ("invoices_invoice_credit_note", credit_note_form()),
        ("invoices_invoice_void", {}),
    ]:
        assert client.post(url(name, invoice.pk), data).status_code == 403, name
    assert client.post(
        url("customers_customer_change", acme.pk), {"name": "Renamed"}
    ).status_code == 403
    assert page(client, "django_celery_beat_periodictask_changelist")[0] == 403

    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_paid) == (S.OPEN, 0)
    assert not Payment.objects.exists() and not CreditNote.objects.exists()
    assert Customer.objects.get(pk=acme.pk).name == "Acme"


def test_staff_outside_the_groups_see_no_billing(client, django_user_model, acme):
    user = django_user_model.objects.create_user("newcomer", password="pw-x-123", is_staff=True)
    client.force_login(user)

    assert page(client, "customers_customer_changelist")[0] == 403
    assert page(client, "invoices_invoice_changelist")[0] == 403
