from celery import shared_task

from customers.clock import system_now

from .documents.tasks import (  # noqa: F401  (registered with the invoices app's tasks)
    render_documents_task,
    render_pending_documents_task,
)
from .sweeps import finalize_due_drafts


@shared_task(name="invoices.finalize_due_drafts", time_limit=300, soft_time_limit=240)
def finalize_due_drafts_task() -> dict:
    return finalize_due_drafts(now=system_now())
