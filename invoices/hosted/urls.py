"""URLs of the invoice page: /i/<token>/... (included from billing_site.urls)."""

from django.urls import path

from . import views

app_name = "hosted"
# Every invoice page is under it, and only they are (billing_site.middleware relies on it).
PATH_PREFIX = "/i/"

urlpatterns = [
    path("i/link-sent/", views.link_sent, name="link_sent"),
    path("i/branding/icon", views.branding_icon, name="branding_icon"),
    path("i/branding/logo", views.branding_logo, name="branding_logo"),
    path("i/<str:token>/", views.page, name="page"),
    path("i/<str:token>/pay", views.pay, name="pay"),
    path("i/<str:token>/payment-method", views.payment_method, name="payment_method"),
    path("i/<str:token>/link", views.link_request, name="link_request"),
    path("i/<str:token>/pdf", views.invoice_pdf, name="invoice_pdf"),
    path(
        "i/<str:token>/receipts/<int:payment_id>.pdf", views.receipt_pdf, name="receipt_pdf"
    ),
    # Anything else under /i/ is the same "no such invoice" page as a bad token.
    path("i/<path:anything>", views.no_invoice, name="no_invoice"),
]
