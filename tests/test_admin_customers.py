"""The customer admin, through the test client: create, prefixes, currency, balance."""

from datetime import timedelta

import pytest
from django.urls import reverse

from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction, Customer, InvoicePrefix, TestClock
from invoices.models import Event
from invoices.services import invoice_record_payment

from .admin_forms import rows
from .factories import NOW, STAFF, make_customer, make_draft, make_open

ADD_URL = reverse("admin:customers_customer_add")

def change_url(customer):
    return reverse("admin:customers_customer_change", args=[customer.pk])

def adjust_url(customer):
    return reverse("admin:customers_customer_adjust_balance", args=[customer.pk])

def customer_form(**overrides):
    data = {
        "name": "Acme Corp",
        "email": "billing@acme.example",
        "address_line1": "", "address_line2": "", "postal_code": "", "city": "", "state": "",
        "country": "FR",
        "preferred_locale": "fr",
        "timezone": "Europe/Paris",
        "currency": "EUR",
        "segment": "smb",
        "invoice_prefix": "",
        "test_clock": "",
    }
    data.update(overrides)
    return data

def edit_form(customer, **overrides):
    """The change form as the page shows it for `customer`, with `overrides` typed in."""
    data = customer_form(
        name=customer.name, email=customer.email, country=customer.country,
        preferred_locale=customer.preferred_locale,
        timezone=customer.timezone, currency=customer.currency, segment=customer.segment,
        invoice_prefix=customer.invoice_prefix,
        **rows("tax_ids", [(t["type"], t["value"]) for t in customer.tax_ids]),
        **rows("metadata", customer.metadata),
    )
    del data["test_clock"]  # chosen at creation, read-only afterwards
    shown = min(customer.balance_transactions.count(), 20)
    data.update({
        "balance_transactions-TOTAL_FORMS": str(shown),
        "balance_transactions-INITIAL_FORMS": str(shown),
        "balance_transactions-MIN_NUM_FORMS": "0",
        "balance_transactions-MAX_NUM_FORMS": "1000",
        # the payment methods (read-only) and reminders opt-out inlines, left as they are
        "payment_methods-TOTAL_FORMS": "0",
        "payment_methods-INITIAL_FORMS": "0",
        "notification_preference-TOTAL_FORMS": "0",
        "notification_preference-INITIAL_FORMS": "0",
        "notification_preference-MIN_NUM_FORMS": "0",
        "notification_preference-MAX_NUM_FORMS": "1",
    })
    methods = customer.payment_methods.count()  # the read-only payment methods inline
    data.update({
        "payment_methods-TOTAL_FORMS": str(methods),
        "payment_methods-INITIAL_FORMS": str(methods),
        "payment_methods-MIN_NUM_FORMS": "0",
        "payment_methods-MAX_NUM_FORMS": "1000",
    })
    data.update(overrides)
    return data

def errors_of(response):
    return response.context["adminform"].form.errors

@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client

# --- creating customers ---

def test_blank_prefix_gets_a_suggested_one(staff):
    response = staff.post(ADD_URL, customer_form(name="Acme Corp", invoice_prefix=""), follow=True)

    customer = Customer.objects.get(name="Acme Corp")
    assert customer.invoice_prefix == "ACMECORP"
    assert InvoicePrefix.objects.filter(prefix="ACMECORP", customer=customer).exists()
    assert "ACMECORP-0001" in response.content.decode()

def test_typed_prefix_is_kept(staff):
    staff.post(ADD_URL, customer_form(invoice_prefix="ACME01"))

    assert Customer.objects.get().invoice_prefix == "ACME01"

@pytest.mark.parametrize(
    "prefix,message",
    [
        ("ac", "3 to 12 uppercase letters or digits"),
        ("acme", "3 to 12 uppercase letters or digits"),
        ("ACME-1", "3 to 12 uppercase letters or digits"),
        ("TOOLONGPREFIX1", "at most 12 characters"),
    ],
)
def test_malformed_prefix_is_refused(staff, prefix, message):
    response = staff.post(ADD_URL, customer_form(invoice_prefix=prefix))

    assert response.status_code == 200
    assert message in str(errors_of(response)["invoice_prefix"])
    assert not Customer.objects.exists()

def test_prefix_of_another_customer_is_refused(staff):
    make_customer(invoice_prefix="GLOBEX")

    response = staff.post(ADD_URL, customer_form(invoice_prefix="GLOBEX"))

    assert "GLOBEX has already been used" in str(errors_of(response)["invoice_prefix"])
    assert Customer.objects.count() == 1

def test_prefix_used_in_the_past_is_refused(staff):
    globex = make_customer(invoice_prefix="GLOBEX")
    staff.post(change_url(globex), edit_form(globex, invoice_prefix="GLOBEX2"))

    response = staff.post(ADD_URL, customer_form(name="New Globex", invoice_prefix="GLOBEX"))

    assert "GLOBEX has already been used" in str(errors_of(response)["invoice_prefix"])
    assert not Customer.objects.filter(name="New Globex").exists()

def test_unknown_time_zone_is_refused(staff):
    response = staff.post(ADD_URL, customer_form(timezone="Mars/Olympus_Mons"))

    assert "Mars/Olympus_Mons is not a known time zone" in str(errors_of(response)["timezone"])
    assert not Customer.objects.exists()

def test_customer_can_be_created_on_a_test_clock(staff):
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)

    staff.post(ADD_URL, customer_form(test_clock=str(clock.pk)))

    assert Customer.objects.get().test_clock == clock

# --- changing customers ---

def test_prefix_can_change_to_a_fresh_one_and_the_old_stays_reserved(staff):
    acme = make_customer(invoice_prefix="ACME")

    response = staff.post(change_url(acme), edit_form(acme, invoice_prefix="ACMEX"))

    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.invoice_prefix == "ACMEX"
    assert set(InvoicePrefix.objects.filter(customer=acme).values_list("prefix", flat=True)) == {
        "ACME", "ACMEX",
    }
    page = staff.get(change_url(acme)).content.decode()
    assert "previous prefixes" in page.lower() and "ACME<" in page

def test_prefix_cannot_change_to_a_used_one(staff):
    make_customer(invoice_prefix="GLOBEX")
    acme = make_customer(invoice_prefix="ACME")
    staff.post(change_url(acme), edit_form(acme, invoice_prefix="ACMEX"))
    acme.refresh_from_db()

    for used in ("GLOBEX", "ACME"):  # another customer's, and this customer's old one
        response = staff.post(change_url(acme), edit_form(acme, invoice_prefix=used))
        assert "has already been used" in str(errors_of(response)["invoice_prefix"])

    acme.refresh_from_db()
    assert acme.invoice_prefix == "ACMEX"

def test_prefix_cannot_be_blanked(staff):
    acme = make_customer(invoice_prefix="ACME")

    response = staff.post(change_url(acme), edit_form(acme, invoice_prefix=""))

    assert "invoice_prefix" in errors_of(response)
    acme.refresh_from_db()
    assert acme.invoice_prefix == "ACME"

def test_other_fields_change_without_touching_the_balance(staff):
    acme = make_customer(invoice_prefix="ACME")
    stale_form = edit_form(acme, segment="enterprise", city="Lyon")
    balance_transaction_create(customer=acme, amount=500, type="adjustment", now=NOW, actor=STAFF)

    response = staff.post(change_url(acme), stale_form)

    assert response.status_code == 302
    acme.refresh_from_db()
    assert (acme.segment, acme.city, acme.balance) == ("enterprise", "Lyon", 500)

def test_currency_changes_while_nothing_was_billed(staff):
    acme = make_customer(currency="EUR")

    staff.post(change_url(acme), edit_form(acme, currency="USD"))

    acme.refresh_from_db()
    assert acme.currency == "USD"

def test_currency_is_locked_once_the_balance_has_transactions(staff):
    acme = make_customer(currency="EUR")
    balance_transaction_create(customer=acme, amount=-500, type="adjustment", now=NOW, actor=STAFF)

    response = staff.post(change_url(acme), edit_form(acme, currency="USD"))

    assert "currency cannot change" in str(errors_of(response)["currency"])
    acme.refresh_from_db()
    assert acme.currency == "EUR"

def test_currency_is_locked_once_the_customer_has_invoices(staff):
    acme = make_customer(currency="EUR")
    make_draft(acme)

    response = staff.post(change_url(acme), edit_form(acme, currency="USD"))

    assert "already has invoices" in str(errors_of(response)["currency"])
    acme.refresh_from_db()
    assert acme.currency == "EUR"

def test_test_clock_is_read_only_after_creation(staff):
    acme = make_customer()
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)

    staff.post(change_url(acme), {**edit_form(acme), "test_clock": str(clock.pk)})

    acme.refresh_from_db()
    assert acme.test_clock is None

# --- the changelist ---

def test_changelist_shows_formatted_balance_and_filters(staff):
    acme = make_customer(name="Acme", currency="EUR", invoice_prefix="ACME", segment="smb")
    make_customer(name="Tokyo Ltd", currency="JPY", invoice_prefix="TOKYO")
    balance_transaction_create(customer=acme, amount=-1250, type="adjustment", now=NOW, actor=STAFF)
    url = reverse("admin:customers_customer_changelist")

    page = staff.get(url).content.decode()
    assert "-€12.50" in page and "ACME" in page and "smb" in page

    by_currency = staff.get(url, {"currency": "JPY"}).content.decode()
    assert "Tokyo Ltd" in by_currency and "Acme" not in by_currency

    by_prefix = staff.get(url, {"q": "TOKYO"}).content.decode()
    assert "Tokyo Ltd" in by_prefix and ">Acme<" not in by_prefix

# --- adjusting the balance ---

def test_balance_credit_adjustment(staff, admin_user):
    acme = make_customer(currency="EUR")
    assert "Adjust balance" in staff.get(change_url(acme)).content.decode()

    response = staff.post(
        adjust_url(acme),
        {"direction": "credit", "amount": "12.50", "description": "Goodwill"},
        follow=True,
    )

    acme.refresh_from_db()
    assert acme.balance == -1250
    entry = BalanceTransaction.objects.get(customer=acme)
    assert (entry.type, entry.amount, entry.actor) == ("adjustment", -1250, "admin")
    page = response.content.decode()
    assert "Balance adjusted by -€12.50. New balance: -€12.50." in page
    assert "Goodwill" in page  # the ledger line shows on the customer page

def test_balance_debit_adjustment_in_a_zero_decimal_currency(staff):
    tokyo = make_customer(currency="JPY")

    staff.post(adjust_url(tokyo), {"direction": "debit", "amount": "1500", "description": "Fee"})

    tokyo.refresh_from_db()
    assert tokyo.balance == 1500

def test_balance_adjustment_on_a_test_clock_is_dated_at_the_clock(staff):
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW - timedelta(days=400))
    acme = make_customer(test_clock=clock)

    staff.post(adjust_url(acme), {"direction": "debit", "amount": "1", "description": "x"})

    assert BalanceTransaction.objects.get(customer=acme).created_at == clock.frozen_time

@pytest.mark.parametrize(
    "currency,amount,message",
    [
        ("EUR", "12.505", "at most 2 decimal places"),
        ("JPY", "10.5", "at most 0 decimal places"),
        ("EUR", "twelve", "Enter an amount such as 12.50"),
        ("EUR", "0", "Enter a positive amount"),
        ("EUR", "-5", "Enter a positive amount"),
        ("EUR", "1e20", "too large"),
    ],
)
def test_bad_balance_amount_is_refused(staff, currency, amount, message):
    acme = make_customer(currency=currency)

    response = staff.post(
        adjust_url(acme), {"direction": "credit", "amount": amount, "description": "x"}
    )

    assert response.status_code == 200
    assert message in str(response.context["form"].errors["amount"])
    acme.refresh_from_db()
    assert acme.balance == 0 and not BalanceTransaction.objects.exists()

def test_balance_adjustment_that_would_overflow_is_refused(staff):
    acme = make_customer(currency="EUR")
    balance_transaction_create(
        customer=acme, amount=10**13, type="adjustment", now=NOW, actor=STAFF
    )

    response = staff.post(
        adjust_url(acme), {"direction": "debit", "amount": "1", "description": "x"}
    )

    assert "too large" in response.content.decode()
    acme.refresh_from_db()
    assert acme.balance == 10**13

def test_balance_ledger_is_read_only(staff):
    acme = make_customer()
    balance_transaction_create(customer=acme, amount=100, type="adjustment", now=NOW, actor=STAFF)
    entry = BalanceTransaction.objects.get()

    assert staff.get(reverse("admin:customers_balancetransaction_add")).status_code == 403
    page = staff.get(reverse("admin:customers_balancetransaction_change", args=[entry.pk]))
    assert page.status_code == 200 and 'name="_save"' not in page.content.decode()
    listing = staff.get(
        reverse("admin:customers_balancetransaction_changelist"), {"type__exact": "adjustment"}
    )
    assert "€1.00" in listing.content.decode()

# --- the customer page, extended by invoices ---

def test_customer_page_shows_invoices_and_timeline(staff, django_assert_max_num_queries):
    acme = make_customer(invoice_prefix="ACME", currency="EUR")
    paid = make_open(acme, lines=((1, 10000),))
    invoice_record_payment(paid, amount=10000, method="bank_transfer", now=NOW, actor=STAFF)
    make_open(acme, lines=((2, 2500),))
    balance_transaction_create(
        customer=acme, amount=-300, type="adjustment", now=NOW + timedelta(hours=1),
        actor=STAFF, description="Goodwill",
    )
    other = make_open(make_customer(invoice_prefix="OTHER"))

    with django_assert_max_num_queries(15):
        response = staff.get(change_url(acme))

    page = response.content.decode()
    assert "ACME-0001" in page and "ACME-0002" in page and other.number not in page
    assert "€100.00" in page and "€50.00" in page
    assert reverse("admin:invoices_invoice_change", args=[paid.pk]) in page
    assert "Finalized as ACME-0001" in page and "Invoice paid in full" in page
    assert "Balance: adjustment of -€3.00" in page and "Goodwill" in page
    timeline = page[page.index("customer-timeline"):]
    # Newest first: the adjustment an hour later comes before the invoices' events.
    assert timeline.index("Balance: adjustment") < timeline.index("Finalized as")
    assert Event.objects.filter(customer=acme).count() > 0
