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
    return errors
