"""PDF attachments, rendered (or found) when the email is delivered."""

from contextlib import contextmanager
from contextvars import ContextVar

from django.utils.translation import gettext as _

from customers.errors import DomainError
from invoices.documents.services import document_ensure
from invoices.models import CreditNote, Invoice, Payment

from .rendering import TemplateError

MODELS = {"invoice": Invoice, "credit_note": CreditNote, "receipt": Payment}


# Off only inside `attachments_omitted()`: `manage.py simulate` delivers thousands of
# emails whose PDFs would cost more than the whole rest of the run.
_attaching = ContextVar("attaching_pdfs", default=True)


@contextmanager
def attachments_omitted():
    """Deliver emails without their PDF attachments while inside this block; each such
    email names what it left out in an X-Omitted-Attachments header."""
    token = _attaching.set(False)
    try:
        yield
    finally:
        _attaching.reset(token)


def attachments_attached() -> bool:
    return _attaching.get()


class AttachmentError(Exception):
    """The document could not be rendered now; the email is retried later."""


def attachment_name(kind: str, obj) -> str:
    if kind == "receipt":
        return f"receipt-{obj.invoice.number}-{obj.pk}.pdf"
    return f"{obj.number}.pdf"


def attachment_load(spec: dict) -> tuple[str, bytes]:
    """(filename, PDF bytes) for {"kind": "invoice"|"credit_note"|"receipt", "id": pk}.

    INTEGRATION POINT (docs branch): `invoices.documents.services.document_ensure(kind,
    obj)` renders the PDF (or returns the stored one) and raises DomainError with a clear
    message when rendering fails."""


    kind = spec.get("kind")
    model = MODELS.get(kind)
    obj = model.objects.filter(pk=spec.get("id")).first() if model else None
    if obj is None:
        raise TemplateError(_("The document to attach (%(kind)s %(id)s) does not exist.")
                            % {"kind": kind, "id": spec.get("id")})
    try:
        document = document_ensure(kind, obj)
        with document.file.open("rb") as handle:
            return attachment_name(kind, obj), handle.read()
    except DomainError as error:
        raise AttachmentError(
            _("The %(name)s PDF could not be rendered: %(error)s")
            % {"name": attachment_name(kind, obj), "error": error.message}
        ) from None
