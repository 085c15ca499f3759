"""Wiring of the admin theme's settings (settings.UNFOLD) to the project's static files."""

from django.templatetags.static import static


def stylesheet(request) -> str:
    return static("billing/admin.css")


def favicon(request) -> str:
    return static("billing/favicon.svg")
