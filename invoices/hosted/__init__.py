"""The hosted invoice page: its tokens here; links (expiry, rotation, revocation) in
`links`, the page's views in `views`.

The token is an HMAC of a random per-invoice salt under SECRET_KEY, so it can be
rebuilt to put a link in an email without being stored, and a leaked database alone
does not reveal it. Rotating the salt revokes every link sent before. Rotating
SECRET_KEY does not: with the old key in SECRET_KEY_FALLBACKS, links issued under it
are rebuilt with it (the page finds an invoice by the token's hash, whatever the key).

This module stays import-light: invoices.services imports it at finalization.
"""

import base64
import hashlib
import hmac
import secrets

from django.conf import settings
from django.urls import reverse


def token_from_salt(salt: str, key: str | None = None) -> str:
    key = settings.SECRET_KEY if key is None else key
    digest = hmac.new(key.encode(), salt.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_fields() -> dict:
    """Fields for a fresh token (at finalization, or to rotate one)."""
    salt = secrets.token_hex(16)
    return {"hosted_token_salt": salt, "hosted_token_hash": token_hash(token_from_salt(salt))}


def token_for(invoice) -> str:
    """The invoice's live link token. A link issued under a key since rotated out
    (SECRET_KEY_FALLBACKS) is rebuilt with that key: its stored hash says which, so
    emails queued before a rotation, and those written after it, carry a link that works."""
    salt = invoice.hosted_token_salt
    if not salt:
        return ""
    token = token_from_salt(salt)
    if token_hash(token) == invoice.hosted_token_hash:
        return token
    for key in settings.SECRET_KEY_FALLBACKS:
        older = token_from_salt(salt, key)
        if token_hash(older) == invoice.hosted_token_hash:
            return older
    return token


def hosted_url(invoice, request=None) -> str:
    """The absolute link to the invoice's page, for emails ("" when it has no live link).
    Built on the request's host when there is one, else on the SITE_URL setting."""
    token = token_for(invoice)
    if not token:
        return ""
    path = reverse("hosted:page", args=[token])
    return request.build_absolute_uri(path) if request is not None else settings.SITE_URL + path
