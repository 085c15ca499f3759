"""The invoice pages skip the staff middleware (sessions, users, messages) and the locale
middleware; every other page keeps them."""

import pytest
from django.conf import settings
from django.contrib.auth.middleware import AuthenticationMiddleware
from django.contrib.messages.middleware import MessageMiddleware
from django.contrib.sessions.middleware import SessionMiddleware
from django.http import HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.test import RequestFactory
from django.urls import reverse
from django.utils.module_loading import import_string

from billing_site.middleware import (
    SiteLocaleMiddleware,
    StaffAuthenticationMiddleware,
    StaffMessageMiddleware,
    StaffSessionMiddleware,
)
from invoices.hosted import urls as hosted_urls


def through(*middleware, path: str):
    """The request as the view sees it after `middleware` (outermost first)."""
    seen = []

    def view(request):
        seen.append(request)
        return HttpResponse("ok")

    handler = view
    for cls in reversed(middleware):
        handler = cls(handler)
    assert handler(RequestFactory().get(path)).status_code == 200
    return seen[0]


STAFF = (StaffSessionMiddleware, StaffAuthenticationMiddleware, StaffMessageMiddleware)


def test_an_invoice_page_request_gets_no_session_user_or_messages():
    request = through(*STAFF, path="/i/" + "a" * 43 + "/")
    assert not hasattr(request, "session")
    assert not hasattr(request, "user")
    assert not hasattr(request, "_messages")


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/admin/", "/healthz", "/admin/invoices/invoice/"])
def test_every_other_request_gets_them_as_before(path):
    request = through(*STAFF, path=path)
    assert hasattr(request, "session") and request.user.is_anonymous
    assert hasattr(request, "_messages")


def test_an_invoice_page_request_gets_no_negotiated_language():
    assert not hasattr(through(SiteLocaleMiddleware, path="/i/" + "a" * 43 + "/"), "LANGUAGE_CODE")


@pytest.mark.parametrize("path", ["/admin/", "/healthz"])
def test_every_other_request_gets_the_browsers_language(path):
    request = through(SiteLocaleMiddleware, path=path)
    assert request.LANGUAGE_CODE == settings.LANGUAGE_CODE


def test_the_settings_use_the_staff_middleware_which_are_djangos():
    # The admin's checks look for Django's classes (or subclasses) in MIDDLEWARE.
    loaded = [import_string(path) for path in settings.MIDDLEWARE]
    for cls, django_cls in zip(
        STAFF, (SessionMiddleware, AuthenticationMiddleware, MessageMiddleware), strict=True
    ):
        assert cls in loaded and issubclass(cls, django_cls)
    assert SiteLocaleMiddleware in loaded and issubclass(SiteLocaleMiddleware, LocaleMiddleware)


def test_every_invoice_page_url_is_under_the_prefix_and_nothing_else_is():
    token = "a" * 43
    names = {
        "page": [token], "pay": [token], "payment_method": [token], "link_request": [token],
        "invoice_pdf": [token], "receipt_pdf": [token, 1], "link_sent": [],
        "branding_icon": [], "branding_logo": [], "no_invoice": ["x"],
    }
    assert {p.name for p in hosted_urls.urlpatterns} == set(names)
    for name, args in names.items():
        assert reverse(f"hosted:{name}", args=args).startswith(hosted_urls.PATH_PREFIX)
    assert not reverse("admin:index").startswith(hosted_urls.PATH_PREFIX)
