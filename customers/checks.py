"""Deploy checks (`manage.py check --deploy`): refuse to call a development
configuration production-ready. Django's own checks accept the dev key (it is long
and random-looking) and only warn about DEBUG, so these are errors of our own."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.security, deploy=True)
def production_settings_check(app_configs, **kwargs):
    errors = []
    if settings.SECRET_KEY == settings.DEV_SECRET_KEY:
        errors.append(
            Error(
                "SECRET_KEY is the development key that ships in the source code.",
                hint="Set SECRET_KEY in the environment to a long random value, e.g. "
                "python3 -c 'import secrets; print(secrets.token_urlsafe(50))'.",
                id="billing.E001",
            )
        )
    if settings.DEBUG:
        errors.append(
            Error(
                "DEBUG is on: error pages would show settings and source code to visitors.",
                hint="Unset DEBUG or set DEBUG=false in production.",
                id="billing.E002",
            )
        )
    if settings.SITE_URL == settings.DEFAULT_SITE_URL.rstrip("/") and not settings.DEBUG:
        errors.append(
            Error(
                "SITE_URL is left at its default, http://localhost:8000: every link in the "
                "emails and PDFs sent to customers would point at localhost.",
                hint="Set SITE_URL to the public address of this site, e.g. "
                "https://billing.example.com.",
                id="billing.E003",
            )
        )
    return errors
