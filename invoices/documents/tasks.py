"""Document rendering tasks: ids in, the domain does the rest."""

from celery import shared_task

from customers.clock import system_now

from .services import documents_render_due


@shared_task(name="invoices.render_documents", time_limit=300, soft_time_limit=240)
def render_documents_task(ids: list[int]) -> dict:
    """The documents just requested by a committed change (those still due)."""
    return documents_render_due(now=system_now(), ids=ids)


@shared_task(name="invoices.render_pending_documents", time_limit=300, soft_time_limit=240)
def render_pending_documents_task() -> dict:
    """The beat sweep: whatever is pending, or failed and due for a retry."""
    return documents_render_due(now=system_now())
