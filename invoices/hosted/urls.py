"""URLs of the invoice page: /i/<token>/... (included from billing_site.urls)."""

from django.urls import path

from . import views

app_name = "hosted"

urlpatterns = [
    path("i/link-sent/", views.link_sent, name="link_sent"),
    path("i/<str:token>/", views.page, name="page"),
    path("i/<str:token>/link", views.link_request, name="link_request"),
    # Anything else under /i/ is the same "no such invoice" page as a bad token.
    path("i/<path:anything>", views.nothing_here, name="nothing_here"),
]
