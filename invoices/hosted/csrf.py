"""CSRF protection for the invoice page's forms, compatible with its no-referrer policy.

The page sends no Referer (its URL carries the token), so a browser posting its forms
sends `Origin: null` and no Referer, which Django's CSRF middleware rejects. These
views keep Django's check of the CSRF token (cookie and form field) and replace the
Origin/Referer check by the browser's Fetch Metadata: a `null` origin, or a missing
Referer over HTTPS, is accepted only from a request the browser itself marks
`Sec-Fetch-Site: same-origin` (sent by every current browser, and not settable by
another site's page).
"""

from django.middleware.csrf import CsrfViewMiddleware, RejectRequest
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
