"""The invoice page in a real browser: Debian's Chromium driven by Playwright, against
Django's live server. Desktop and phone widths, paying with a card that succeeds, a
decline, a double click, and the PDF download.

Skipped only when /usr/bin/chromium is missing (CI installs it: .ci/run). Playwright's
own browser builds are never downloaded or used.
"""

import os
import time
from pathlib import Path

import pytest
from django.contrib.auth.models import Group

from customers.clock import system_now
from invoices.gateways.models import SimulatedCharge
from invoices.hosted import token_for
from invoices.models import Invoice, PaymentAttempt

from ..browser import CHROMIUM
from ..factories import make_customer, make_open

DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}
SCREENSHOTS = os.environ.get("HOSTED_SCREENSHOTS", "")  # a folder, to look at the pages

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)",
    ),
    # The live server runs in another thread: it sees committed data only. Serialized
    # rollback puts back what migrations wrote (the staff groups) after the flush.
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def open_page(chromium, live_server):
    contexts = []

    def opener(invoice, viewport=DESKTOP):
        context = chromium.new_context(viewport=viewport, accept_downloads=True)
        contexts.append(context)
        page = context.new_page()
        page.goto(f"{live_server.url}/i/{token_for(invoice)}/")
        return page

    yield opener
    for context in contexts:
        context.close()


@pytest.fixture
def invoice():
    customer = make_customer(name="Acme Browser SARL", address_line1="8 rue du Test")
    return make_open(customer, lines=((3, 2500), (1, 2500)), now=system_now())


def screenshot(page, name: str) -> None:
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def fits_the_width(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_page_reads_well_at_desktop_and_phone_widths(open_page, invoice, viewport):
    page = open_page(invoice, viewport)
    screenshot(page, f"open-{viewport['width']}")

    assert page.title() == f"Invoice {invoice.number}"
    assert page.locator("#amount-due").inner_text() == "€100.00"
    assert page.get_by_text("Acme Browser SARL").is_visible()
    assert fits_the_width(page)
    # Every input has a visible label, and the pay button is big enough to tap.
    for field in ("pay-number", "pay-expiry", "pay-cvc"):
        assert page.locator(f"label[for={field}]").is_visible()
    box = page.locator("#pay-button").bounding_box()
    assert box["height"] >= 44 and box["width"] >= 200


def test_paying_with_a_card_that_succeeds(open_page, invoice):
    page = open_page(invoice, PHONE)
    page.get_by_label("Card number").first.fill("4242 4242 4242 4242")
    page.locator("#pay-expiry").fill("12/34")
    page.locator("#pay-cvc").fill("123")
    page.locator("#pay-button").click()

    page.get_by_text("Thank you! Your payment of €100.00 was received.").wait_for()
    screenshot(page, "paid-375")
    assert page.locator(".badge").inner_text() == "Paid"
    assert page.locator("#pay-button").count() == 0
    assert "attempt=" in page.url
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_remaining) == ("paid", 0)


def test_a_declined_card_is_shown_clearly_and_another_can_be_tried(open_page, invoice):
    page = open_page(invoice)
    page.locator("#pay-number").fill("4000 0000 0000 9995")
    page.locator("#pay-expiry").fill("12/34")
    page.locator("#pay-cvc").fill("123")
    page.locator("#pay-button").click()

    alert = page.get_by_role("alert").first
    alert.wait_for()
    screenshot(page, "declined-1280")
    assert "did not go through" in alert.inner_text()
    assert "Your card has insufficient funds." in alert.inner_text()
    assert page.locator("#pay-number").input_value() == ""  # the number is not echoed
    invoice.refresh_from_db()
    assert invoice.status == "open"


def test_a_double_click_on_pay_charges_once(open_page, invoice):
    page = open_page(invoice)
    page.locator("#pay-number").fill("4242424242424242")
    page.locator("#pay-expiry").fill("12/34")
    page.locator("#pay-cvc").fill("123")
    page.locator("#pay-button").dblclick()

    # The page the browser shows is the second click's. When that click arrives while
    # the first is still at the gateway (a loaded machine), it answers with the first's
    # attempt, not yet recorded: "processing, no need to pay again". Reloading then
    # shows the outcome once the first request has recorded it.
    page.locator("#payment [role=status]").first.wait_for()
    deadline = time.monotonic() + 30
    while not page.get_by_text("was received").is_visible():
        assert page.get_by_text("is processing").is_visible()
        assert time.monotonic() < deadline, "the payment never showed as received"
        page.wait_for_timeout(250)
        page.reload()
    page.reload()
    page.get_by_text("was received").wait_for()
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
    assert SimulatedCharge.objects.count() == 1
    assert Invoice.objects.get(pk=invoice.pk).amount_paid == 10000


def test_the_invoice_pdf_downloads(open_page, invoice, tmp_path):
    page = open_page(invoice)
    with page.expect_download() as download_info:
        page.get_by_role("link", name=f"Invoice {invoice.number} (PDF)").click()
    download = download_info.value
    assert download.suggested_filename == f"{invoice.number}.pdf"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    assert target.read_bytes().startswith(b"%PDF")


def test_switching_language_in_the_browser(open_page, invoice):
    page = open_page(invoice, PHONE)
    page.get_by_role("link", name="Français").click()
    page.get_by_text("Montant dû").first.wait_for()
    assert page.locator("html").get_attribute("lang") == "fr"
    assert page.locator("#amount-due").inner_text() == "100,00\xa0€"
    assert fits_the_width(page)


def test_the_groups_made_by_migrations_are_still_there_after_a_browser_test():
    assert Group.objects.filter(name="Finance admin").exists()

