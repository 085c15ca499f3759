"""What staff type in the admin: amounts in major units, tax ids, metadata rows,
countries, amounts per currency. Bad input gets a message next to its field and
nothing is saved."""

import pytest
from django.urls import reverse

from automations.models import BillingSettings
from automations.notifications.models import NotificationSettings
from customers.models import Customer
from invoices.models import Invoice

from .admin_forms import rows
from .factories import make_customer, make_draft
from .test_admin_customers import change_url as customer_url
from .test_admin_customers import customer_form, edit_form
from .test_admin_invoices import invoice_form, line_data

ADD_CUSTOMER = reverse("admin:customers_customer_add")


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def field_errors(response, name):
    return response.context["adminform"].form.errors.get(name, [])


# --- customers --------------------------------------------------------------------


def test_tax_ids_and_metadata_are_rows_stored_as_before(staff):
    data = customer_form(
        **rows("tax_ids", [("eu_vat", "fr 40 303 265 045"), ("gb_vat", "980 7806 84")]),
        **rows("metadata", {"plan": "gold", "crm": "42"}),
    )

    response = staff.post(ADD_CUSTOMER, data)

    assert response.status_code == 302
    customer = Customer.objects.get()
    assert customer.tax_ids == [
        {"type": "eu_vat", "value": "FR40303265045"}, {"type": "gb_vat", "value": "GB980780684"},
    ]
    assert customer.metadata == {"plan": "gold", "crm": "42"}


def test_the_form_shows_rows_and_country_names(staff):
    customer = make_customer(country="FR", tax_ids=[{"type": "eu_vat", "value": "FR40303265045"}],
                             metadata={"plan": "gold"})

    page = staff.get(customer_url(customer)).content.decode()

    assert 'name="tax_ids_key"' in page and 'value="FR40303265045"' in page
    assert 'name="metadata_key"' in page and 'value="plan"' in page
    assert '<option value="FR" selected>France</option>' in page


@pytest.mark.parametrize("field,data,message", [
    ("tax_ids", rows("tax_ids", [("eu_vat", "FR40303265046")]),
     "FR40303265046 is not a valid EU VAT number (its format or check digits are wrong)."),
    ("tax_ids", rows("tax_ids", [("br_cnpj", "11.222.333/0001-80")]),
     "11.222.333/0001-80 is not a valid Brazilian CNPJ (its format or check digits are wrong)."),
    ("tax_ids", rows("tax_ids", [("", "FR40303265045")]),
     "Choose the type of the tax id FR40303265045."),
    ("metadata", rows("metadata", {"k" * 41: "v"}),
     f"The key “{'k' * 41}” is 41 characters long: keys have at most 40."),
    ("metadata", rows("metadata", {f"key{i}": "v" for i in range(51)}),
     "Metadata has at most 50 keys; this has 51."),
    ("country", {"country": "XY"},
     "XY is not a country this list knows; choose one by its name."),
])
def test_bad_customer_input_is_refused_next_to_its_field(staff, field, data, message):
    customer = make_customer(name="Before", country="FR")

    response = staff.post(customer_url(customer), edit_form(customer, name="After", **data))

    assert response.status_code == 200
    assert field_errors(response, field) == [message]
    customer.refresh_from_db()
    assert customer.name == "Before" and customer.country == "FR"


# --- invoices: amounts in the invoice's currency -------------------------------------


@pytest.mark.parametrize("currency,typed,minor", [
    ("EUR", "900.00", 90000), ("EUR", "12.5", 1250), ("JPY", "1500", 1500), ("KWD", "1.234", 1234),
])
def test_line_amounts_are_typed_in_major_units(staff, currency, typed, minor):
    customer = make_customer(currency=currency)
    data = invoice_form(line_data(0, unit_amount=typed, discount_amount="0"), customer=customer.pk)

    response = staff.post(reverse("admin:invoices_invoice_add"), data)

    assert response.status_code == 302
    assert Invoice.objects.get().lines.get().unit_amount == minor


def test_a_draft_shows_its_amounts_in_major_units(staff):
    draft = make_draft(lines=((1, 90000),), discount_amount=500)

    page = staff.get(reverse("admin:invoices_invoice_change", args=[draft.pk])).content.decode()

    assert 'name="lines-0-unit_amount" value="900.00"' in page
    assert 'name="discount_amount" value="5.00"' in page


@pytest.mark.parametrize("currency,typed,message", [
    ("JPY", "1500.5", "JPY amounts have at most 0 decimal places."),
    ("EUR", "10.001", "EUR amounts have at most 2 decimal places."),
])
def test_an_invoice_discount_with_too_many_decimals_is_refused(staff, currency, typed, message):
    customer = make_customer(currency=currency)
    data = invoice_form(line_data(0, unit_amount="100"), customer=customer.pk,
                        discount_amount=typed)

    response = staff.post(reverse("admin:invoices_invoice_add"), data)

    assert response.status_code == 200
    assert field_errors(response, "discount_amount") == [message]
    assert not Invoice.objects.exists()


# --- settings: amounts per currency as rows ---------------------------------------


def test_tolerances_are_rows_in_major_units(staff):
    settings = BillingSettings.load()
    url = reverse("admin:automations_billingsettings_change", args=[settings.pk])

    response = staff.post(url, {
        "automatic_collection": "on", "default_retry_policy": settings.default_retry_policy_id,
        "uncollectible_after_days": "",
        "subscription_after_last_retry": settings.subscription_after_last_retry,
        **rows("partial_payment_tolerance", [("EUR", "1.00"), ("JPY", "100")]),
    })

    assert response.status_code == 302
    assert BillingSettings.load().partial_payment_tolerance == {"EUR": 100, "JPY": 100}
    page = staff.get(url).content.decode()
    assert '<option value="EUR" selected>EUR</option>' in page and 'value="1.00"' in page


@pytest.mark.parametrize("typed,message", [
    ([("JPY", "10.5")], "JPY: JPY amounts have at most 0 decimal places."),
    ([("", "10")], "Choose a currency for the amount 10."),
    ([("EUR", "5"), ("EUR", "6")], "EUR is given twice."),
])
def test_bad_thresholds_are_refused(staff, typed, message):
    settings = NotificationSettings.load()
    url = reverse("admin:automations_notificationsettings_change", args=[settings.pk])

    response = staff.post(url, {
        "send_finalized_invoices": "on", "reminder_offsets": "-7, 0, 7",
        "overdue_alert_days": "7", "digest_hour": "7", "staff_locale": "en",
        **rows("overdue_alert_thresholds", typed),
    })

    assert response.status_code == 200
    assert field_errors(response, "overdue_alert_thresholds") == [message]
    assert NotificationSettings.load().overdue_alert_thresholds == {}
