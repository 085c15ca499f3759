"""Middleware that the customers' invoice pages skip.

The invoice pages (invoices/hosted, under /i/) have no sessions, no logged-in users and
no flash messages: the link's token is the customer's only credential, the page picks
its language itself, and its forms carry their own CSRF protection. Sessions,
authentication and messages still ran on every request there, each setting up what
nothing read (measured side by side in the web process, two rounds of 15 x 300 visits:
about 0.1 ms of a page's 0.9-1.0 ms of CPU, medians 0.96 against 1.08 ms and 0.88
against 0.99 ms). These
subclasses run Django's middleware everywhere else, unchanged; being subclasses, the
admin's checks that require them still find them.

The locale middleware too: the invoice page speaks the customer's language or the one
picked on the page, never the browser's (invoices.hosted.locale), so negotiating it from
Accept-Language and marking every response as varying with it was work thrown away
(measured through Django's WSGI handler, 24 batches of 300 visits each way, load 4:
about 0.05 ms of a visit's 0.6-0.7 ms of CPU). The one page there that does speak the
browser's language, the page for links that lead to no invoice, negotiates it itself.
"""

from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.middleware.locale import LocaleMiddleware

from invoices.hosted.urls import PATH_PREFIX


def is_invoice_page(request) -> bool:
    return request.path_info.startswith(PATH_PREFIX)


class _NotOnInvoicePages:
    def __call__(self, request):
        if is_invoice_page(request):
            return self.get_response(request)
        return super().__call__(request)

    async def __acall__(self, request):
        if is_invoice_page(request):
            return await self.get_response(request)
        return await super().__acall__(request)


class StaffSessionMiddleware(_NotOnInvoicePages, SessionMiddleware):
    pass


class StaffAuthenticationMiddleware(_NotOnInvoicePages, AuthenticationMiddleware):
    pass


class StaffMessageMiddleware(_NotOnInvoicePages, MessageMiddleware):
    pass


class SiteLocaleMiddleware(_NotOnInvoicePages, LocaleMiddleware):
    pass
