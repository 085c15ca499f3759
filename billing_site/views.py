"""Views of the site itself (not of an app)."""

from django.http import HttpResponse


def health(request):
    """For load balancers and process managers: the web process answers. Touches
    nothing (no database), so it is also the trivial view the hosted page's benchmark
    compares itself with."""
    return HttpResponse("ok", content_type="text/plain")
