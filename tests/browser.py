"""The real browser of the page tests: Debian's Chromium driven by Playwright (which
never downloads a browser of its own). Loaded as a pytest plugin by tests/conftest.py."""

from pathlib import Path

import pytest
from django.db import connections

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture
def chromium(monkeypatch):
    """One browser per test. Playwright's sync API runs an event loop in this thread
    while it is open: the tests' own ORM calls are still synchronous ones (hence
    DJANGO_ALLOW_ASYNC_UNSAFE), and the database is set up and flushed outside it, so
    that the serialized rollback finds the test database's connection."""
    sync_api = pytest.importorskip("playwright.sync_api")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield browser
        browser.close()
        # The tests' ORM calls opened connections of their own in this context: closed
        # here, or PostgreSQL refuses to drop the test database at the end.
        connections.close_all()
