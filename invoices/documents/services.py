"""Stored documents: requested by events, rendered by workers, served from storage.

The API other parts use: `document_get` (the rendered PDF, or None), `document_ensure`
(renders now when missing) and `draft_preview_pdf` (a draft, rendered on demand and
never stored).

Flow: `documents_request` subscribes to the event log and writes pending rows in the
transaction of the change (set-based: a bulk door hands it thousands of events). After
commit a task renders those rows; the beat sweep `documents_render_due` finds whatever
is still pending (or failed and due for a retry) through an index and claims rows with
SKIP LOCKED, so a lost broker message loses nothing. A failed rendering is recorded on
its row (shown in the admin) and retried with backoff, a few times; it never reaches
the door that caused it.

Versions: a finalized invoice is rendered once when finalized and once more when it is
paid or voided, so that the PDF shows its status. Marking it uncollectible writes it off
in the business's books only: the customer still owes it and can still pay it, so the
copy they hold does not change (and a write-off of thousands costs no renderings). Each is a new
row; the newest rendered row is served and the older ones stay as they were sent. The
Factur-X XML of the later versions is the one embedded in the first: the invoice as
issued does not change when it is paid.
"""

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import CharField, Exists, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils.text import get_valid_filename
from django.utils.translation import gettext as _

from customers.clock import system_now
from customers.errors import DomainError

from ..bulkwrite import rows_insert
from ..models import CreditNote, Event, Invoice, Payment
from . import facturx
from .models import Branding, Document

log = logging.getLogger(__name__)
K = Document.Kind
D = Document.Status

EVENT_KINDS = {
    "invoice.finalized": K.INVOICE,
    "invoice.paid": K.INVOICE,
    "invoice.voided": K.INVOICE,
    "credit_note.created": K.CREDIT_NOTE,
    "credit_note.voided": K.CREDIT_NOTE,
    "invoice.payment_succeeded": K.RECEIPT,
}
MODELS = {K.INVOICE: Invoice, K.CREDIT_NOTE: CreditNote, K.RECEIPT: Payment}
MAX_ATTEMPTS = 5
RETRY_DELAYS = [timedelta(minutes=m) for m in (1, 5, 30, 120)]  # after attempts 1..4
CHUNK = 500  # ids per IN (...) list
TASK_CHUNK = 20  # documents per render task enqueued after commit
# Render tasks sent per commit at most; a bulk change's remaining documents are left to
# the beat sweep (every minute), so a batch of thousands costs no thousand broker calls.
TASKS_PER_COMMIT = 10


def document_key(kind: str, pk: int) -> str:
    return f"{kind}:{pk}"


def _kind(kind: str) -> Document.Kind:
    try:
        return K(kind)
    except ValueError:
        raise ValueError(f"unknown document kind {kind!r}") from None


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- requested by events -------------------------------------------------------------


@dataclass
class Wanted:
    kind: str
    pk: int  # of the invoice, credit note or payment
    requested_at: datetime


def wanted_from(events: list[Event]) -> dict[str, Wanted]:
    wanted = {}
    for event in events:
        kind = EVENT_KINDS.get(event.type)
        if kind == K.INVOICE:
            pk = event.invoice_id
        elif kind == K.CREDIT_NOTE:
            pk = event.credit_note_id
        elif kind == K.RECEIPT:
            pk = (event.data or {}).get("payment")
        else:
            continue
        if pk:
            wanted.setdefault(document_key(kind, pk), Wanted(kind, int(pk), event.created_at))
    return wanted


def documents_request(events: list[Event]) -> None:
    """Event subscriber: a pending document for every event that calls for one.
    One pending row per document is enough (it renders the state at rendering time)."""
    wanted = wanted_from(events)
    if not wanted:
        return
    rows = documents_build(list(wanted.values()), unless_pending=True)
    created = rows_insert(Document, rows)
    ids = [row.pk for row in created]
    if ids:
        transaction.on_commit(lambda: documents_enqueue(ids))


def documents_build(wanted: list[Wanted], *, unless_pending: bool = False) -> list[Document]:
    """Unsaved rows, with the number and date of what they show (three queries at most).
    `unless_pending`: none for a document that has a pending row already (asked in the
    same queries)."""
    by_kind: dict[str, dict[int, Wanted]] = {}
    for item in wanted:
        by_kind.setdefault(item.kind, {})[item.pk] = item
    rows = []
    for kind, items in by_kind.items():
        for fields in _document_fields(kind, list(items), unless_pending):
            item = items[fields.pop("pk")]
            rows.append(Document(
                kind=kind, key=document_key(kind, item.pk), requested_at=item.requested_at,
                **fields,
            ))
    return rows


def _document_fields(kind: str, pks: list[int], unless_pending: bool = False
                     ) -> Iterable[dict]:
    for chunk in _chunks(pks):
        rows = MODELS[kind].objects.filter(pk__in=chunk)
        if unless_pending:
            # The document's key (document_key) built in SQL: read from document_key_idx.
            key = Concat(Value(f"{kind}:"), Cast(OuterRef("pk"), CharField()))
            rows = rows.filter(~Exists(Document.objects.filter(key=key, status=D.PENDING)))
        if kind == K.INVOICE:
            for pk, number, finalized_at in rows.values_list("pk", "number", "finalized_at"):
                yield {"pk": pk, "invoice_id": pk, "number": number, "issued_at": finalized_at}
        elif kind == K.CREDIT_NOTE:
            for pk, number, created_at, invoice_id in rows.values_list(
                "pk", "number", "created_at", "invoice_id"
            ):
                yield {"pk": pk, "credit_note_id": pk, "invoice_id": invoice_id,
                       "number": number, "issued_at": created_at}
        else:
            for pk, received_at, invoice_id, invoice_number in rows.values_list(
                "pk", "received_at", "invoice_id", "invoice__number"
            ):
                yield {"pk": pk, "payment_id": pk, "invoice_id": invoice_id,
                       "number": receipt_number(invoice_number, pk), "issued_at": received_at}


def receipt_number(invoice_number: str, payment_pk: int) -> str:
    return f"{invoice_number}-R{payment_pk}"


def documents_enqueue(ids: list[int]) -> None:
    """After commit: ask the workers to render these now (the first TASKS_PER_COMMIT
    chunks; the beat sweep renders the rest). If the broker is unreachable the beat
    sweep finds them all anyway, so this fails fast rather than retrying."""
    from .tasks import render_documents_task

    try:
        for chunk in list(_chunks(ids, TASK_CHUNK))[:TASKS_PER_COMMIT]:
            render_documents_task.apply_async((chunk,), retry=False)
    except Exception as error:  # noqa: BLE001 - the rows are committed: the sweep renders them
        log.warning("documents left to the sweep, the broker is unreachable: %s", error)


# --- rendering -----------------------------------------------------------------------


@dataclass
class Rendered:
    content: bytes
    shows_status: str
    facturx: bool = False
    note: str = ""


def documents_due(now: datetime):
    """Pending rows, and failed ones whose retry is due (document_due_idx)."""
    return Document.objects.filter(
        Q(status=D.PENDING) | Q(status=D.FAILED, next_attempt_at__lte=now)
    )


def documents_render_due(*, now: datetime, ids: list[int] | None = None, limit: int = 500) -> dict:
    """Render due documents one at a time, each claimed with SKIP LOCKED in its own
    transaction, so any number of workers share the work and none renders a row twice."""
    counts = {"rendered": 0, "failed": 0}
    for _attempt in range(limit):
        with transaction.atomic():
            due = documents_due(now)
            if ids is not None:
                due = due.filter(pk__in=ids)
            document = due.select_for_update(skip_locked=True).order_by("pk").first()
            if document is None:
                break
            document_render(document, now=now)
        counts["rendered" if document.status == D.RENDERED else "failed"] += 1
    return counts


def document_render(document: Document, *, now: datetime) -> Document:
    """Render one claimed row and store the file. A failure is written on the row (with
    the next retry, while attempts remain) and never raised."""
    attempts = document.attempts + 1
    try:
        with transaction.atomic():  # a savepoint: a failed query spoils nothing else
            rendered = document_content(document)
        name = default_storage.save(document_path(document), ContentFile(rendered.content))
    except Exception as error:  # noqa: BLE001 - recorded on the row, retried by the sweep
        log.exception("document %s (%s) not rendered", document.pk, document)
        retry = RETRY_DELAYS[attempts - 1] if attempts < MAX_ATTEMPTS else None
        _row_update(document, status=D.FAILED, attempts=attempts,
                    error=f"{type(error).__name__}: {error}"[:2000],
                    next_attempt_at=now + retry if retry else None)
        return document
    _row_update(document, status=D.RENDERED, attempts=attempts, file=name,
                size=len(rendered.content), shows_status=rendered.shows_status,
                facturx=rendered.facturx, note=rendered.note[:300], error="",
                next_attempt_at=None, rendered_at=now)
    return document


def _row_update(document: Document, **fields) -> None:
    Document.objects.filter(pk=document.pk).update(**fields)
    for name, value in fields.items():
        setattr(document, name, value)


def document_path(document: Document) -> str:
    year = document.issued_at.year if document.issued_at else "undated"
    name = get_valid_filename(f"{document.number}-{document.pk}.pdf")
    return f"documents/{document.kind}/{year}/{name}"


def document_content(document: Document) -> Rendered:
    from . import render  # WeasyPrint loads in ~0.7 s: only in processes that render

    branding = Branding.load()
    if document.kind == K.INVOICE:
        invoice = Invoice.objects.select_related("customer").get(pk=document.invoice_id)
        return invoice_rendered(invoice, branding, document)
    if document.kind == K.CREDIT_NOTE:
        note = CreditNote.objects.select_related("invoice__customer").get(
            pk=document.credit_note_id
        )
        return Rendered(render.credit_note_pdf(note, branding), shows_status=note.status)
    payment = Payment.objects.select_related("invoice__customer").get(pk=document.payment_id)
    return Rendered(render.receipt_pdf(payment, branding), shows_status="paid")


def invoice_rendered(invoice: Invoice, branding: Branding, document: Document) -> Rendered:
    if invoice.is_draft:
        raise DomainError(_("A draft has no stored PDF; preview it instead."))
    from . import render

    xml, note = invoice_xml(invoice, branding, document)
    content = render.invoice_pdf(invoice, branding, xml=xml, hosted_link=hosted_link(invoice))
    return Rendered(content, shows_status=invoice.status, facturx=xml is not None, note=note)


def invoice_xml(invoice: Invoice, branding: Branding, document: Document) -> tuple:
    """(Factur-X XML or None, why not): the XML of the first Factur-X version of this
    invoice when there is one, else built now."""
    earlier = (
        Document.objects.filter(key=document.key, status=D.RENDERED, facturx=True)
        .exclude(pk=document.pk).order_by("pk").first()
    )
    if earlier is not None:
        xml = embedded_xml(earlier)
        if xml is not None:
            return xml, ""
    try:
        return facturx.invoice_xml(invoice, branding), ""
    except facturx.NotExpressible as error:
        return None, f"Plain PDF/A, not Factur-X: {error}"


def embedded_xml(document: Document) -> bytes | None:
    """The factur-x.xml embedded in a stored PDF, or None if it cannot be read."""
    from facturx import get_facturx_xml_from_pdf

    try:
        with document.file.open("rb") as stored:
            _name, xml = get_facturx_xml_from_pdf(stored.read(), check_xsd=False)
    except Exception as error:  # noqa: BLE001 - missing file or broken PDF: build anew
        log.warning("Factur-X XML of document %s unreadable: %s", document.pk, error)
        return None
    return xml or None


def hosted_link(invoice: Invoice) -> str:
    """The hosted invoice page, printed on the PDF ("" when the invoice has no live link)."""
    from ..hosted import hosted_url

    return hosted_url(invoice)


# --- the API for the hosted page, the admin and emails --------------------------------


def document_get(kind: str, obj) -> Document | None:
    """The newest rendered version of this invoice's, credit note's or payment's
    document, or None while there is none (it costs no rendering)."""
    key = document_key(_kind(kind), obj.pk)
    return Document.objects.filter(key=key, status=D.RENDERED).order_by("-id").first()


def document_ensure(kind: str, obj, *, now: datetime | None = None) -> Document:
    """The rendered document, rendering it now when there is none yet. Raises
    DomainError (a clear message) when it cannot be made."""
    kind = _kind(kind)
    document = document_get(kind, obj)
    if document is not None:
        return document
    if kind == K.INVOICE and obj.status == Invoice.Status.DRAFT:
        raise DomainError(_("A draft invoice has no PDF until it is finalized."))
    now = now or system_now()
    with transaction.atomic():
        document = (
            Document.objects.select_for_update().filter(key=document_key(kind, obj.pk))
            .exclude(status=D.RENDERED).order_by("-id").first()
        )
        if document is None:
            existing = document_get(kind, obj)  # rendered by a worker meanwhile
            if existing is not None:
                return existing
            document = documents_build([Wanted(kind, obj.pk, now)])[0]
            document.save()
        document_render(document, now=now)
    if document.status != D.RENDERED:
        raise DomainError(
            _("The PDF of %(document)s could not be made just now; please try again in a few "
              "minutes.") % {"document": document.number}
        )
    return document


def draft_preview_pdf(invoice: Invoice) -> bytes:
    """A draft as its PDF would look, marked as a draft; rendered on demand, never
    stored, without Factur-X (a draft has no number)."""
    from . import render

    if not invoice.is_draft:
        raise DomainError(_("Only drafts are previewed; a finalized invoice has its PDF."))
    try:
        return render.invoice_pdf(invoice, Branding.load(), xml=None)
    except Exception as error:  # noqa: BLE001 - shown to staff, never a server error
        log.exception("preview of draft %s failed", invoice.pk)
        message = _("The preview could not be made: %(error)s") % {"error": error}
        raise DomainError(message) from None


def document_retry(document: Document) -> None:
    """Staff ask for a failed document again: a fresh set of attempts, due now."""
    Document.objects.filter(pk=document.pk, status=D.FAILED).update(
        status=D.PENDING, attempts=0, next_attempt_at=None
    )
