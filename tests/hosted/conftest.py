import re
import uuid

import pytest
import time_machine
from django.utils import translation

from invoices.hosted import token_for

from ..factories import NOW


@pytest.fixture(autouse=True)
def _own_rate_limit_counters(settings):
    """Counters of this test only, even on a Redis cache shared with other runs."""
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "KEY_PREFIX": f"test-{uuid.uuid4().hex}"}
    }


@pytest.fixture(autouse=True)
def _own_media(settings, tmp_path):
    """Rendered PDFs and uploaded icons go to this test's own folder."""
    settings.MEDIA_ROOT = str(tmp_path / "media")


@pytest.fixture(autouse=True)
def _english_afterwards():
    yield
    translation.deactivate()


@pytest.fixture
def frozen():
    """The page's clock, frozen at NOW; `frozen.move_to(...)` travels."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


def page_url(invoice, suffix="", **query) -> str:
    url = f"/i/{token_for(invoice)}/{suffix}"
    if query:
        url += "?" + "&".join(f"{key}={value}" for key, value in query.items())
    return url


NONCE = re.compile(r'nonce="[^"]+"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]+"')


def text_of(response) -> str:
    """The body without what changes on every response (CSP nonce, CSRF token)."""
    body = response.content.decode()
    return CSRF.sub("csrf", NONCE.sub("nonce", body))
