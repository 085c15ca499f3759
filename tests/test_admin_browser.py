"""The admin in a real browser (Debian's Chromium through Playwright, as
tests/hosted/test_browser.py): the dashboard, the invoice list and an invoice page at
1280 and 1440 px. The invoice page's title and its buttons never overlap (their
bounding boxes), and the list fits the window with its filter panel open (no horizontal
scroll). ADMIN_SCREENSHOTS=<folder> keeps the screenshots to look at."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django.test import Client

from customers.clock import system_now
from invoices.models import Invoice

from .factories import make_customer, make_draft, make_open

CHROMIUM = Path("/usr/bin/chromium")
WIDTHS = [1280, 1440]
SCREENSHOTS = os.environ.get("ADMIN_SCREENSHOTS", "")

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def chromium(monkeypatch):
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()
        connections.close_all()


@pytest.fixture
def books():
    """A few invoices of every kind, one past due, one with long names."""
    now = system_now()
    acme = make_customer(name="Acme Industries Société Anonyme à Responsabilité Limitée",
                         invoice_prefix="ACMEINDUSTRY")
    globex = make_customer(name="Globex", currency="USD")
    opened = make_open(acme, lines=((3, 250000),), now=now)
    Invoice.objects.filter(pk=opened.pk).update(
        past_due_at=now - timedelta(days=9), due_date=(now - timedelta(days=9)).date()
    )
    for _ in range(3):
        make_open(globex, now=now)
    make_draft(globex, now=now)
    return {"open": opened}


@pytest.fixture
def admin_page(chromium, live_server, admin_user):
    contexts = []

    def opener(width):
        context = chromium.new_context(viewport={"width": width, "height": 900})
        contexts.append(context)
        client = Client()
        client.force_login(admin_user)
        context.add_cookies([{
            "name": settings.SESSION_COOKIE_NAME, "url": live_server.url,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
        }])
        page = context.new_page()
        page.goto(f"{live_server.url}/admin/")
        return page

    yield opener, live_server.url
    for context in contexts:
        context.close()


def screenshot(page, name):
    if SCREENSHOTS:
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), full_page=True)


def overlaps(a, b) -> bool:
    return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])


def no_horizontal_scroll(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


@pytest.mark.parametrize("width", WIDTHS)
def test_the_dashboard(admin_page, books, width):
    opener, _url = admin_page
    page = opener(width)
    screenshot(page, f"dashboard-{width}")

    assert page.locator("#overdue").inner_text().count("€7,500.00") == 1
    assert page.locator("#due-today").is_visible() and page.locator("#failed-emails").is_visible()
    assert no_horizontal_scroll(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_invoice_list_fits_with_its_filters_open(admin_page, books, width):
    opener, url = admin_page
    page = opener(width)
    page.goto(f"{url}/admin/invoices/invoice/")
    page.locator("a", has_text="Filters").first.click()
    page.wait_for_timeout(300)
    screenshot(page, f"invoice-list-{width}")

    assert no_horizontal_scroll(page)
    table = page.locator("#result_list")
    assert page.evaluate(
        "e => e.parentElement.scrollWidth <= e.parentElement.clientWidth + 1",
        table.element_handle(),
    )
    # The columns a finance person reads first are on screen.
    for header in ("Amount remaining", "Due date", "Status"):
        box = page.get_by_role("columnheader", name=header).bounding_box()
        assert box and box["x"] + box["width"] <= width
    assert page.get_by_text("Past due (9 days)").is_visible()


@pytest.mark.parametrize("width", WIDTHS)
def test_the_invoice_page_title_and_buttons_never_overlap(admin_page, books, width):
    opener, url = admin_page
    page = opener(width)
    page.goto(f"{url}/admin/invoices/invoice/{books['open'].pk}/change/")
    screenshot(page, f"invoice-page-{width}")

    title = page.locator("#header-inner h1")
    title_box = title.bounding_box()
    assert title.inner_text().strip().endswith(books["open"].number)
    assert page.evaluate("e => e.scrollWidth <= e.clientWidth + 1", title.element_handle())
    buttons = page.locator("#object-buttons > *")
    assert buttons.count() >= 3  # Record payment, Download PDF, More actions
    for i in range(buttons.count()):
        assert not overlaps(title_box, buttons.nth(i).bounding_box())
    page.get_by_text("More actions").click()
    menu = page.locator("#object-buttons .menu")
    assert menu.get_by_text("Void").is_visible()
    menu_box = menu.bounding_box()
    assert menu_box["x"] >= 0 and menu_box["x"] + menu_box["width"] <= width
    assert no_horizontal_scroll(page)
