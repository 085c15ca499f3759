"""The admin in a real browser (Debian's Chromium through Playwright, as
tests/hosted/test_browser.py): the dashboard, the invoice list and an invoice page at
1280 and 1440 px. The invoice page's title and its buttons never overlap (their
bounding boxes), and the list fits the window with its filter panel open (no horizontal
scroll). The same for a subscription page and an automation page with steps, and the
subscriptions' and automations' other screens fit the window.
ADMIN_SCREENSHOTS=<folder> keeps the screenshots to look at."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from customers.clock import system_now
from invoices.models import Invoice
from subscriptions.models import Subscription
from subscriptions.transitions import subscription_transition

from .automations.support import make_automation
from .browser import CHROMIUM
from .factories import STAFF, make_customer, make_draft, make_open
from .subscription_factories import make_price, make_subscription

WIDTHS = [1280, 1440]
SCREENSHOTS = os.environ.get("ADMIN_SCREENSHOTS", "")

pytestmark = [
    pytest.mark.skipif(
        not CHROMIUM.exists(), reason="needs Debian's Chromium at /usr/bin/chromium"
    ),
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


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


CHECKBOX_LOOK = """e => { const s = getComputedStyle(e);
    return [s.appearance, s.width, s.height, s.borderRadius, s.borderTopColor,
            s.backgroundColor]; }"""


@pytest.mark.parametrize("path", ["invoices/invoice", "customers/customer"])
def test_the_row_checkboxes_look_like_the_select_all_box(admin_page, books, path):
    opener, url = admin_page
    page = opener(1280)
    page.goto(f"{url}/admin/{path}/")
    toggle = page.evaluate(CHECKBOX_LOOK, page.locator("#action-toggle").element_handle())
    row = page.locator("input.action-select").first

    assert page.evaluate(CHECKBOX_LOOK, row.element_handle()) == toggle
    row.check()
    assert page.evaluate(CHECKBOX_LOOK, row.element_handle())[-1] != toggle[-1]  # filled


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


@pytest.fixture
def subscription():
    """An active subscription of a customer with a long name, a 30-day period."""
    now = system_now()
    customer = make_customer(name="Acme Industries Société Anonyme à Responsabilité Limitée",
                             invoice_prefix="ACMESUBS")
    price = make_price(3000, interval="day", count=30, name="Team")
    subscription = make_subscription(price, customer=customer, now=now, trial_period_days=3)
    subscription_transition(subscription, Subscription.Status.ACTIVE, now=now, actor=STAFF)
    return subscription


def title_and_buttons_apart(page, width):
    title = page.locator("#header-inner h1")
    title_box = title.bounding_box()
    buttons = page.locator("#object-buttons > *")
    assert buttons.count() >= 1
    for i in range(buttons.count()):
        assert not overlaps(title_box, buttons.nth(i).bounding_box())
    assert no_horizontal_scroll(page)
    return buttons


@pytest.mark.parametrize("width", WIDTHS)
def test_the_subscription_page_title_and_buttons_never_overlap(admin_page, subscription, width):
    opener, url = admin_page
    page = opener(width)
    page.goto(f"{url}/admin/subscriptions/subscription/{subscription.pk}/change/")
    screenshot(page, f"subscription-page-{width}")

    buttons = title_and_buttons_apart(page, width)
    assert buttons.count() == 2  # Change plan, More actions
    page.get_by_text("More actions").click()
    menu = page.locator("#object-buttons .menu")
    assert menu.get_by_text("Cancel subscription").is_visible()
    menu_box = menu.bounding_box()
    assert menu_box["x"] >= 0 and menu_box["x"] + menu_box["width"] <= width
    assert page.locator("#subscription-timeline").get_by_text("Subscription created").count()
    assert no_horizontal_scroll(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_subscription_forms_and_list_fit(admin_page, subscription, width):
    opener, url = admin_page
    page = opener(width)
    base = f"{url}/admin/subscriptions/subscription/"
    page.goto(f"{base}{subscription.pk}/cancel/")
    screenshot(page, f"subscription-cancel-{width}")
    assert no_horizontal_scroll(page)
    # The radio choices in the theme's layout: each label on one line, not a word a line.
    label = page.get_by_text("At the end of the current period")
    assert label.bounding_box()["height"] < 30

    page.goto(f"{base}{subscription.pk}/change-plan/")
    page.locator("input[name=quantity]").fill("3")
    page.get_by_role("button", name="Preview").click()
    page.locator("#proration-preview").wait_for()
    screenshot(page, f"subscription-change-plan-{width}")
    assert page.get_by_role("button", name="Apply the change").is_visible()
    assert no_horizontal_scroll(page)

    page.goto(base)
    screenshot(page, f"subscription-list-{width}")
    assert page.locator(".new-subscription-link").is_visible()
    assert no_horizontal_scroll(page)


@pytest.mark.parametrize("width", WIDTHS)
def test_the_automation_page_title_and_buttons_never_overlap(admin_page, width):
    automation = make_automation(
        "Remind, wait a week, then void a long past-due invoice of a large customer",
        "invoice_finalized", [("wait", {"days": 7}), ("void_invoice", {})],
    )
    make_open(make_customer(name="Globex"), now=system_now() - timedelta(days=2))
    opener, url = admin_page
    page = opener(width)
    base = f"{url}/admin/automations/automation/"
    page.goto(f"{base}{automation.pk}/change/")
    screenshot(page, f"automation-page-{width}")
    title_and_buttons_apart(page, width)
    assert page.locator(".dry-run-link").is_visible()

    page.goto(f"{base}recipes/")
    screenshot(page, f"automation-recipes-{width}")
    assert no_horizontal_scroll(page)

    page.goto(f"{base}{automation.pk}/dry-run/")
    screenshot(page, f"automation-dry-run-{width}")
    assert no_horizontal_scroll(page)


def test_each_step_shows_the_inputs_of_its_kind_only(admin_page):
    automation = make_automation("Wait then note", "invoice_finalized", [
        ("wait", {"days": 7, "until_paid": True}), ("add_note", {"text": "checked"})])
    opener, url = admin_page
    page = opener(1280)
    page.goto(f"{url}/admin/automations/automation/{automation.pk}/change/")
    screenshot(page, "automation-step-inputs-1280")
    assert page.locator("input[name=steps-0-wait_amount]").input_value() == "7"
    assert page.locator("input[name=steps-0-wait_until_paid]").is_checked()
    assert page.locator("input[name=steps-0-wait_amount]").is_visible()
    assert not page.locator("textarea[name=steps-0-team_memo]").is_visible()
    assert page.locator("textarea[name=steps-1-note_text]").is_visible()
    assert not page.locator("input[name=steps-1-wait_amount]").is_visible()
    # The empty step: nothing shows until a kind is chosen, then that kind's inputs.
    assert not page.locator("textarea[name=steps-2-team_memo]").is_visible()
    page.locator("select[name=steps-2-kind]").select_option("email_team")
    assert page.locator("textarea[name=steps-2-team_memo]").is_visible()
    assert not page.locator("input[name=steps-2-wait_amount]").is_visible()
    # Conditions as rows: a field, an operator and a value on one line.
    assert page.locator("select[name=condition_rows_field]").first.is_visible()
    assert no_horizontal_scroll(page)
