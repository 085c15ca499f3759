"""Who may receive staff emails (alerts, digest): staff users, or addresses in the
company's own domain. Anything else is refused, so that collection figures never leave
the company by a typo in a settings screen."""

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.utils.translation import gettext as _

from invoices.models import Branding


def addresses_parse(text: str) -> list[str]:
    """Addresses written one per line or separated by commas, without duplicates."""
    seen: dict[str, str] = {}
    for part in text.replace(",", "\n").splitlines():
        address = part.strip()
        if address and address.lower() not in seen:
            seen[address.lower()] = address
    return list(seen.values())


def company_email_domain() -> str:
    """COMPANY_EMAIL_DOMAIN, else the domain of the support address on the branding."""
    configured = (getattr(settings, "COMPANY_EMAIL_DOMAIN", "") or "").strip().lower()
    if configured:
        return configured
    support = Branding.load().support_email
    return support.rpartition("@")[2].lower() if "@" in support else ""


def staff_addresses(addresses: list[str]) -> set[str]:
    users = get_user_model().objects.filter(is_staff=True, is_active=True)
    lowered = [a.lower() for a in addresses]
    return {email.lower() for email in users.values_list("email", flat=True) if email} & set(
        lowered
    )


def recipients_validate(text: str) -> list[str]:
    """The addresses in `text`, or a ValidationError naming each refused one and why."""
    addresses = addresses_parse(text)
    invalid = []
    for address in addresses:
        try:
            validate_email(address)
        except ValidationError:
            invalid.append(address)
    if invalid:
        raise ValidationError(
            _("Not valid email addresses: %(list)s.") % {"list": ", ".join(invalid)}
        )
    domain = company_email_domain()
    staff = staff_addresses(addresses)
    refused = [
        a for a in addresses
        if a.lower() not in staff and not (domain and a.lower().endswith("@" + domain))
    ]
    if refused:
        if domain:
            rule = _("only staff users' addresses or addresses at %(domain)s are allowed") % {
                "domain": domain
            }
        else:
            rule = _(
                "only staff users' addresses are allowed (set COMPANY_EMAIL_DOMAIN, or a "
                "support address on the branding, to allow the company's domain)"
            )
        raise ValidationError(
            _("Refused: %(list)s: %(rule)s.") % {"list": ", ".join(refused), "rule": rule}
        )
    return addresses
