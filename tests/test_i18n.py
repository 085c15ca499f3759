"""The French admin: what a finance team whose browser asks for French sees, and the
catalogues: French complete, Brazilian Portuguese complete for what customers read."""

import re
from pathlib import Path

import pytest
import time_machine
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.urls import reverse
from django.utils import translation

from invoices.models import Payment
from invoices.services import invoice_record_payment

from .factories import NOW, STAFF, make_customer, make_draft, make_open

LOCALE_DIR = Path(settings.LOCALE_PATHS[0])
LOCALES = ["fr", "pt_BR"]
# What customers read, by where the message is written; pt_BR must translate these.
CUSTOMER_FACING = ("templates/documents/", "invoices/documents/render.py",
                   "invoices/documents/services.py")
# Model labels that documents print (statuses, payment methods, credit note reasons).
PRINTED_LABELS = {
    "Draft", "Open", "Paid", "Void", "Uncollectible", "Issued", "Bank transfer", "Cheque",
    "Cash", "Card", "Other", "Duplicate", "Fraudulent", "Order change",
    "Product unsatisfactory",
}
INVOICES = reverse("admin:invoices_invoice_changelist")
# %(name)s, %s, %d, {name}: each must survive translation, as many times as in the msgid.
PLACEHOLDER = re.compile(r"%\(\w+\)[sdifr]|%[sdifr]|\{\w*\}")
HTML_TAG = re.compile(r"</?\w+[^>]*>")


@pytest.fixture(autouse=True)
def _frozen_time():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def _english_afterwards():
    # The locale middleware leaves French active in this thread; later tests expect English.
    yield
    translation.deactivate()


@pytest.fixture
def french_staff(client, admin_user):
    client.force_login(admin_user)
    client.defaults["HTTP_ACCEPT_LANGUAGE"] = "fr"
    return client


def invoice_url(invoice, view="change"):
    return reverse(f"admin:invoices_invoice_{view}", args=[invoice.pk])


def page(response):
    assert response.status_code == 200
    return response.content.decode()


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


def catalog(locale="fr"):
    with open(LOCALE_DIR / locale / "LC_MESSAGES" / "django.po", "rb") as f:
        return read_po(f, locale=locale)


def entries(locale="fr"):
    return [m for m in catalog(locale) if m.id]


def must_translate(locale, message) -> bool:
    """French: everything. Brazilian Portuguese: what customers read."""
    if locale == "fr":
        return True
    places = [path for path, _line in message.locations]
    return message.id in PRINTED_LABELS or any(p.startswith(CUSTOMER_FACING) for p in places)


def forms(message):
    """(source, translation) pairs: one per msgstr, plural forms against msgid_plural."""
    if not message.pluralizable:
        return [(message.id, message.string)]
    singular, plural = message.id
    return [(singular if n == 0 else plural, text) for n, text in enumerate(message.string)]


def as_tuple(value):
    return tuple(value) if isinstance(value, (list, tuple)) else value


# --- pages ------------------------------------------------------------------------------


def test_invoice_changelist_in_french(french_staff):
    make_open(make_customer(name="Acme"))

    body = page(french_staff.get(INVOICES))

    assert "Factures" in body  # verbose name plural, in the title and breadcrumbs
    assert "statut" in body and "mode de recouvrement" in body  # filter titles
    assert "Montant restant" in body  # a column
    assert "Ouverte" in body  # a status value
    assert "Finaliser les brouillons sélectionnés" in body  # a bulk action


def test_open_invoice_page_in_french(french_staff):
    invoice = make_open()

    body = page(french_staff.get(invoice_url(invoice)))

    assert "Marquer comme irrécouvrable" in body  # object buttons
    assert "Enregistrer un paiement" in body and "Créer un avoir" in body
    assert "Totaux" in body and "Montant dû" in body
    assert "Chronologie" in body  # the timeline


def test_customer_page_in_french(french_staff):
    customer = make_customer(name="Acme")
    make_open(customer)

    body = page(french_staff.get(reverse("admin:customers_customer_change", args=[customer.pk])))

    assert "Adresse de facturation" in body and "Numérotation des factures" in body
    assert "Ajuster le solde" in body
    assert "Dernières factures" in body


def test_a_domain_refusal_is_shown_in_french(french_staff):
    # Given a draft with no lines
    draft = make_draft(lines=())

    # When staff press Finalize
    response = french_staff.post(invoice_url(draft, "finalize"), follow=True)

    # Then the refusal is in French and nothing changed
    assert "Ajoutez au moins une ligne avant de finaliser." in messages_of(response)
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_payment_on_a_void_invoice_is_refused_in_french(french_staff):
    invoice = make_open()
    french_staff.post(invoice_url(invoice, "void"))

    response = french_staff.post(
        invoice_url(invoice, "record_payment"),
        {"amount": "10", "method": "cheque", "received_at": "2026-03-01T10:00", "reference": ""},
    )

    assert f"la facture {invoice.number} est annulée" in page(response)
    assert not Payment.objects.exists()


def test_voiding_a_paid_invoice_through_the_admin_action_is_refused_in_french(french_staff):
    invoice = make_open(lines=((1, 10000),))
    invoice_record_payment(invoice, amount=10000, method="bank_transfer", now=NOW, actor=STAFF)

    response = french_staff.post(
        INVOICES, {"action": "void_selected", "_selected_action": [invoice.pk]}, follow=True
    )

    assert (
        f"{invoice.number}\u00a0: Une facture payée ne peut pas être annulée."
        in messages_of(response)
    )
    invoice.refresh_from_db()
    assert invoice.status == "paid"


# --- the catalogue ----------------------------------------------------------------------


@pytest.mark.parametrize("locale", LOCALES)
def test_every_message_is_translated_and_none_is_fuzzy(locale):
    untranslated = [
        m.id for m in entries(locale)
        if must_translate(locale, m) and not all(text for _, text in forms(m))
    ]
    fuzzy = [m.id for m in entries(locale) if m.fuzzy]

    assert untranslated == []
    assert fuzzy == []
    assert not catalog(locale).fuzzy


def test_customer_documents_are_in_the_portuguese_catalogue():
    customer_facing = [m for m in entries("pt_BR") if must_translate("pt_BR", m)]

    assert len(customer_facing) > 40
    assert {"Invoice %(number)s", "Amount due", "Paid"} <= {m.id for m in customer_facing}


@pytest.mark.parametrize("locale", LOCALES)
def test_plural_messages_have_both_forms(locale):
    plurals = [m for m in entries(locale) if m.pluralizable and all(m.string)]

    assert all(len(m.string) == 2 for m in plurals)
    if locale == "fr":
        assert plurals


@pytest.mark.parametrize("locale", LOCALES)
def test_placeholders_and_html_survive_translation(locale):
    broken = [
        (source, text)
        for message in entries(locale)
        for source, text in forms(message)
        if text and (
            sorted(PLACEHOLDER.findall(source)) != sorted(PLACEHOLDER.findall(text))
            or sorted(HTML_TAG.findall(source)) != sorted(HTML_TAG.findall(text))
        )
    ]

    assert broken == []


def context_text(context):
    # Babel's .mo reader gives message contexts as bytes, its .po reader as str.
    return context.decode() if isinstance(context, bytes) else context


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalogue_matches_the_po_file(locale):
    with open(LOCALE_DIR / locale / "LC_MESSAGES" / "django.mo", "rb") as f:
        compiled = {
            (context_text(m.context), as_tuple(m.id)): as_tuple(m.string)
            for m in read_mo(f)
            if m.id
        }

    stale = [
        m.id for m in entries(locale)
        if all(text for _, text in forms(m))  # msgfmt leaves untranslated ones out
        and compiled.get((m.context, as_tuple(m.id))) != as_tuple(m.string)
    ]

    assert stale == []
