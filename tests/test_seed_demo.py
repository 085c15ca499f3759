"""The demo data that `make run` loads: every status, and loading twice changes nothing."""

from io import StringIO

from django.contrib.auth import get_user_model
from django.core.management import call_command

from customers.clock import system_now
from customers.models import BalanceTransaction, Customer, TestClock
from invoices.models import CreditNote, Event, Invoice, Payment, TaxRate

MODELS = [Customer, TestClock, BalanceTransaction, TaxRate, Invoice, CreditNote, Payment, Event]


def counts() -> dict:
    return {model.__name__: model.objects.count() for model in MODELS}


def seed(**options) -> str:
    out = StringIO()
    call_command("seed_demo", stdout=out, **options)
    return out.getvalue()


def test_seeding_twice_changes_nothing():
    # Given the demo data loaded once
    first = seed()
    loaded = counts()
    # When it is loaded again
    second = seed()
    # Then nothing changed, and the person is told so
    assert counts() == loaded
    assert "Loaded demo data" in first
    assert "already loaded" in second


def test_demo_shows_every_status_and_situation():
    # When the demo data is loaded
    seed()
    # Then every invoice status is there, with the situations staff need to see
    invoices = Invoice.objects.all()
    assert set(invoices.values_list("status", flat=True)) == set(Invoice.Status.values)
    open_invoices = invoices.filter(status=Invoice.Status.OPEN)
    assert open_invoices.filter(amount_paid__gt=0).exists()  # partially paid
    assert any(invoice.is_past_due(system_now()) for invoice in open_invoices)
    assert invoices.filter(total_discount_amount__gt=0).exists()
    assert invoices.filter(starting_balance__lt=0).exists()  # balance credit applied
    assert any(len(i.tax_breakdown) > 1 for i in invoices)  # several tax rates
    assert set(Customer.objects.values_list("currency", flat=True)) >= {
        "EUR", "USD", "GBP", "JPY", "BRL", "KWD"
    }
    assert set(Customer.objects.values_list("preferred_locale", flat=True)) == {"en", "fr", "pt-BR"}
    assert Customer.objects.filter(test_clock__isnull=False).exists()
    notes = CreditNote.objects.all()
    assert notes.filter(type=CreditNote.Type.PRE_PAYMENT).exists()
    assert notes.filter(refund_amount__gt=0, credit_amount__gt=0).exists()
    assert notes.filter(status=CreditNote.Status.VOID).exists()


def test_demo_admin_is_created_once_with_the_given_password():
    # When the demo is loaded with an admin password, twice
    seed(admin_password="billing-demo")
    seed(admin_password="another")
    # Then one superuser 'admin' exists and the first password still works
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_superuser and admin.check_password("billing-demo")


def test_demo_customers_date_from_their_first_invoice():
    # When the demo data is loaded (subscriptions bill some customers months back)
    seed()
    # Then no customer is younger than its first invoice, and each dates from it
    for customer in Customer.objects.all():
        first = customer.invoices.order_by("created_at").values_list("created_at", flat=True)[0]
        assert customer.created_at == first, customer.name
