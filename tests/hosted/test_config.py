"""The invoice page's configuration from the environment: the cache its rate limits
count in, and the site address of links in emails."""

import json

from ..test_setup import run

SCRIPT = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'cache': s.CACHES['default'], 'site': s.SITE_URL}))"
)


def seen_with(tmp_path, **env) -> dict:
    # Empty means unset (as in an .env file with "CACHE_URL=").
    result = run(["-c", SCRIPT], {
        "DJANGO_SETTINGS_MODULE": "billing_site.settings", "VAR_DIR": str(tmp_path),
        "REDIS_URL": "", "CACHE_URL": "", "SITE_URL": "", **env,
    })
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_with_redis_the_rate_limits_count_in_redis(tmp_path):
    seen = seen_with(tmp_path, REDIS_URL="redis://cache.example.com:6379/3")
    assert seen["cache"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache"
    assert seen["cache"]["LOCATION"] == "redis://cache.example.com:6379/3"


def test_without_redis_they_count_in_memory(tmp_path):
    seen = seen_with(tmp_path)
    assert seen["cache"]["BACKEND"] == "django.core.cache.backends.locmem.LocMemCache"
    assert seen["site"] == "http://localhost:8000"


def test_an_explicit_cache_and_site_win(tmp_path):
    seen = seen_with(tmp_path, REDIS_URL="redis://broker.example.com:6379/0",
                     CACHE_URL="redis://cache.example.com:6379/5",
                     SITE_URL="https://billing.example.com/")
    assert seen["cache"]["LOCATION"] == "redis://cache.example.com:6379/5"
    assert seen["site"] == "https://billing.example.com"
