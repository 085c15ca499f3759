import os
import warnings

from celery import Celery
from celery.exceptions import SecurityWarning

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "billing_site.settings")

app = Celery("billing_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

if os.environ.get("BILLING_DEV_WORKER_AS_ROOT") == "quiet":
    # `make run` only (Procfile.dev), where the worker may run as root because root is a
    # container's only user: it accepts JSON only (with pickle, Celery refuses to start
    # as root whatever this says) from a filesystem broker in the checkout. The README
    # says so; production's Procfile keeps the warning.
    warnings.filterwarnings(
        "ignore", category=SecurityWarning, message="You're running the worker with superuser"
    )
