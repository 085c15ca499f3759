"""Writing to the outbox: one row per notification, in the caller's transaction.

The key is unique per notification ("receipt:42", "reminder:17:-3"), and rows are
inserted with ON CONFLICT DO NOTHING: the same event handled twice, two sweeps racing,
or a retried request can never queue the same email twice."""

import logging
from datetime import datetime

from django.db import transaction

from customers.models import Customer
from invoices.bulkwrite import rows_insert

from .kinds import KINDS
from .models import OutboxMessage

log = logging.getLogger(__name__)


def outbox_message(
    key: str,
    *,
    kind: str,
    now: datetime,
    customer_id: int | None = None,
    invoice_id: int | None = None,
    to: list[str] | tuple = (),
    locale: str = "",
    context: dict | None = None,
    attachments: list[dict] | tuple = (),
) -> OutboxMessage:
    """An unsaved row, due at `now` (its first attempt is as soon as possible)."""
    if kind not in KINDS:
        raise ValueError(f"unknown email kind {kind!r}")
    return OutboxMessage(
        key=key[:200],
        kind=kind,
        customer_id=customer_id,
        invoice_id=invoice_id,
        to=list(to),
        locale=locale,
        context=context or {},
        attachments=list(attachments),
        next_attempt_at=now,
        created_at=now,
    )


def outbox_write(messages: list[OutboxMessage], *, clocks: dict | None = None) -> None:
    """Queue `messages` (those whose key is already queued are left as they are) and
    wake a worker once the transaction commits. Beat's sweep delivers them anyway
    if the broker is down: the database is what counts.

    `clocks`: customer id -> test clock id (None: none) of customers the caller loaded
    in this transaction; the others' are read."""
    if not messages:
        return
    clocks = dict(clocks or {})
    unknown = {m.customer_id for m in messages if m.customer_id and m.customer_id not in clocks}
    if unknown:
        clocks |= dict(
            Customer.objects.filter(pk__in=unknown, test_clock__isnull=False)
            .values_list("pk", "test_clock_id")
        )
    for message in messages:
        message.test_clock_id = clocks.get(message.customer_id)
    rows_insert(OutboxMessage, messages, ignore_conflicts=True)
    transaction.on_commit(delivery_wake, robust=True)


def delivery_wake() -> None:
    """After commit: wake a worker to deliver now. Published once, without Celery's
    publish retries (seconds of waiting in a staff action when Redis is down): the
    rows are committed and the beat sweep delivers them anyway."""
    from .tasks import outbox_deliver_task

    try:
        outbox_deliver_task.apply_async(retry=False)
    except Exception as error:  # noqa: BLE001 - the rows are committed: the sweep sends them
        log.warning("emails left to the sweep, the broker is unreachable: %s", error)


def notify(
    key: str,
    *,
    to: list[str],
    template: str,
    context: dict,
    attachments: list[dict] | tuple = (),
    now: datetime,
    customer=None,
    invoice=None,
    locale: str = "",
) -> None:
    """Queue one email for other parts of the product. `template` is an email kind
    (kinds.KINDS); `context` holds JSON values; `to` empty means the customer's address.
    Call it inside the transaction of the change that causes the email."""
    outbox_write([
        outbox_message(
            key,
            kind=template,
            now=now,
            customer_id=customer.pk if customer is not None else None,
            invoice_id=invoice.pk if invoice is not None else None,
            to=to,
            locale=locale,
            context=context,
            attachments=attachments,
        )
    ])
