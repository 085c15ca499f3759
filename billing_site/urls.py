from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from .views import health

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", health, name="health"),
    path("", include("invoices.hosted.urls")),
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
]
