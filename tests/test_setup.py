"""Production configuration comes from the environment only, and `check --deploy`
tells a production-ready configuration from a development one.

Settings are read once per process, so each case runs Django in a subprocess with the
environment it describes (the developer's own variables are overridden; a .env file
only fills in variables that are not set, and a fresh clone has none).
"""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
CONFIG_VARIABLES = [
    "DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL", "SECRET_KEY", "ALLOWED_HOSTS",
    "CSRF_TRUSTED_ORIGINS", "EMAIL_URL", "DEFAULT_FROM_EMAIL", "HTTPS", "BEHIND_PROXY",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_PRELOAD", "DEBUG", "VAR_DIR", "MEDIA_ROOT",
    "STATIC_ROOT", "LOG_LEVEL",
]


def production_env(tmp_path, **overrides) -> dict:
    env = {
        "SECRET_KEY": secrets.token_urlsafe(50),
        "DEBUG": "false",
        "HTTPS": "true",
        "SECURE_HSTS_PRELOAD": "true",
        "ALLOWED_HOSTS": "billing.example.com",
        "SITE_URL": "https://billing.example.com",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
        "VAR_DIR": str(tmp_path),
    }
    env.update(overrides)
    return env


def run(args: list[str], env: dict) -> subprocess.CompletedProcess:
    # Every variable the settings read is set or emptied here: a developer's own
    # environment must not change the outcome (settings do not override with .env).
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_VARIABLES}
    clean.update(env)
    return subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=clean, capture_output=True, text=True,
        timeout=120,
    )


def settings_as_seen(env: dict) -> dict:
    script = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        "print(json.dumps({'db': s.DATABASES['default'], 'broker': s.CELERY_BROKER_URL, "
        "'hosts': s.ALLOWED_HOSTS, 'ssl_redirect': s.SECURE_SSL_REDIRECT, "
        "'email_host': getattr(s, 'EMAIL_HOST', ''), 'debug': s.DEBUG, "
        "'hsts': s.SECURE_HSTS_SECONDS}, default=str))"
    )
    result = run(["-c", script], {"DJANGO_SETTINGS_MODULE": "billing_site.settings", **env})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_production_settings_pass_the_deploy_check(tmp_path):
    # When the deploy check runs with production settings from the environment
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
                 production_env(tmp_path))
    # Then it is clean, warnings included
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_the_development_key_fails_the_deploy_check_with_a_clear_message(tmp_path):
    # Given production settings but the development SECRET_KEY and DEBUG left on
    env = production_env(tmp_path, SECRET_KEY=settings.DEV_SECRET_KEY, DEBUG="true")
    # When the deploy check runs
    result = run(["manage.py", "check", "--deploy"], env)
    # Then it fails and says what to fix
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "billing.E001" in output and "SECRET_KEY is the development key" in output
    assert "billing.E002" in output and "DEBUG is on" in output


def test_site_url_left_at_its_default_fails_the_deploy_check(tmp_path):
    # Given production settings without SITE_URL
    env = production_env(tmp_path)
    del env["SITE_URL"]
    # When the deploy check runs
    result = run(["manage.py", "check", "--deploy"], env)
    # Then it fails and names the setting, instead of a silent localhost in every link
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "billing.E003" in output and "SITE_URL is left at its default" in output


def test_settings_come_from_the_environment(tmp_path):
    # When production variables are set
    seen = settings_as_seen(production_env(
        tmp_path,
        DATABASE_URL="postgres://billing:s3cret@db.example.com:5433/billing",
        REDIS_URL="redis://cache.example.com:6379/1",
        ALLOWED_HOSTS="billing.example.com,admin.example.com",
        EMAIL_URL="smtp+tls://mailer:pw@smtp.example.com:587",
    ))
    # Then the settings use them: Redis is the Celery broker unless one is given
    assert seen["db"]["ENGINE"] == "billing_site.postgresql"  # Django's, health check aside
    assert (seen["db"]["HOST"], seen["db"]["PORT"], seen["db"]["NAME"]) == (
        "db.example.com", 5433, "billing"
    )
    assert seen["broker"] == "redis://cache.example.com:6379/1"
    assert seen["hosts"] == ["billing.example.com", "admin.example.com"]
    assert seen["email_host"] == "smtp.example.com"
    assert seen["ssl_redirect"] is True and seen["hsts"] > 0 and seen["debug"] is False


def test_nothing_set_means_the_embedded_default(tmp_path):
    # When no configuration variable is set (VAR_DIR only keeps files out of the tree)
    seen = settings_as_seen({"VAR_DIR": str(tmp_path)})
    # Then SQLite, the filesystem broker and plain HTTP are used
    assert seen["db"]["ENGINE"] == "django.db.backends.sqlite3"
    assert seen["broker"] == "filesystem://localhost/"
    assert seen["ssl_redirect"] is False and seen["debug"] is False


def test_an_explicit_broker_wins_over_redis(tmp_path):
    seen = settings_as_seen({
        "VAR_DIR": str(tmp_path),
        "REDIS_URL": "redis://cache.example.com:6379/1",
        "CELERY_BROKER_URL": "redis://broker.example.com:6379/2",
    })
    assert seen["broker"] == "redis://broker.example.com:6379/2"
