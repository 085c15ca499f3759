"""The invoice page with Redis stopped: its rate limits keep counting (in the
database), so a public page that charges cards never fails open. Redis is a private
redis-server (tests/processes.py), really stopped."""

import shutil
import uuid

import pytest

from invoices.models import RateLimitCounter

from ..factories import make_customer, make_open
from ..processes import RedisServer, free_port
from .test_pay import pay

pytestmark = pytest.mark.usefixtures("frozen")


@pytest.fixture
def redis_stopped(settings, tmp_path):
    """The cache is a Redis that was running and has been stopped."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server program (apt install redis-server)")
    server = RedisServer(free_port(), tmp_path)
    settings.CACHES = {"default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url,
        "KEY_PREFIX": f"test-{uuid.uuid4().hex}",
        "OPTIONS": {"socket_connect_timeout": 1, "socket_timeout": 1},
    }}
    from django.core.cache import cache

    cache.set("alive", 1)  # it was really there
    server.kill()
    yield
    server.stop()


def test_paying_stays_rate_limited_with_redis_stopped(client, redis_stopped):
    invoice = make_open(make_customer(), lines=((1, 10000),))

    statuses = [
        pay(client, invoice, nonce=f"nonce-number-{n:012d}", number="4242").status_code
        for n in range(15)
    ]

    assert statuses == [400] * 10 + [429] * 5
    assert RateLimitCounter.objects.filter(key__contains=":pay:invoice:").get().count == 15
