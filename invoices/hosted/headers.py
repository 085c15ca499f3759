"""Headers on every response of the invoice page, pages and PDFs alike.

The token is in the URL, so: no Referer ever leaves the page (no-referrer), nothing is
kept in shared or browser caches (no-store), and search engines are told to stay away.
The page is never framed (clickjacking on a pay button), runs no script, and its only
style sheet is inline with a per-response nonce.
"""

import secrets
from functools import wraps


def content_security_policy(nonce: str) -> str:
    return "; ".join([
        "default-src 'none'",
        f"style-src 'nonce-{nonce}'",
        "img-src 'self' data:",
        "form-action 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
    ])


def hosted_headers(view):
    """Give the view a CSP nonce (request.csp_nonce) and set the headers on its response."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        request.csp_nonce = secrets.token_urlsafe(16)
        response = view(request, *args, **kwargs)
        response["Content-Security-Policy"] = content_security_policy(request.csp_nonce)
        response["X-Frame-Options"] = "DENY"
        response["Referrer-Policy"] = "no-referrer"
        response["Cache-Control"] = "no-store"
        response["X-Robots-Tag"] = "noindex, nofollow"
        return response

    return wrapped
