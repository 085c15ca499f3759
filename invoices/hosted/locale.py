"""The language of the invoice page: the one the customer picked on the page, else the
customer's preferred locale, else the site's default. Never the browser's: the invoice
speaks the language it was issued in until the reader switches."""

from django.conf import settings


def language_code(value: str) -> str:
    """"pt-BR", "pt_BR" and "pt-br" are the same Django language code, "pt-br"."""
    return str(value).strip().lower().replace("_", "-")


def page_languages() -> dict[str, str]:
    return dict(settings.LANGUAGES)


def language_for(customer) -> str:
    """The customer's preferred language, or the site's default (also without a customer)."""
    code = language_code(customer.preferred_locale) if customer is not None else ""
    return code if code in page_languages() else settings.LANGUAGE_CODE


def language_chosen(requested: str | None, customer) -> str:
    """`requested` (the page's ?lang=) when it is a language the page speaks; anything
    else (missing, unknown, malformed) falls back to the customer's language."""
    code = language_code(requested or "")
    return code if code in page_languages() else language_for(customer)
