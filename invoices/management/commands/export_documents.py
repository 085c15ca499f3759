"""Write the stored PDFs (invoices, credit notes, receipts) to a folder, for the
accountant's period close:

    manage.py export_documents --to /path/to/folder [--since 2026-01-01]

One file per document, its newest rendered version, named by date, kind and number
(2026-03-02_invoice_ACME-0001.pdf) so that a folder listing is in date order. Nothing
is rendered: documents not rendered yet are counted and left out. Idempotent: a file
already there with the same content is left alone, one that changed (an invoice paid
since) is replaced.
"""

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.db.models import Exists, OuterRef
from django.utils.text import get_valid_filename

from invoices.documents.models import Document

BATCH = 500  # rows per query while streaming


class Command(BaseCommand):
    help = "Write the stored invoice, credit note and receipt PDFs to a folder."

    def add_arguments(self, parser):
        parser.add_argument("--to", required=True, help="Folder to write the PDFs into.")
        parser.add_argument(
            "--since", help="Only documents issued on or after this date (YYYY-MM-DD)."
        )

    def handle(self, *args, to, since=None, **options):
        folder = folder_ready(Path(to))
        since_date = date_parse(since) if since else None
        counts = {"written": 0, "unchanged": 0, "missing": 0}
        for document in latest_documents(since_date):
            counts[document_export(document, folder)] += 1
        not_rendered = documents_not_rendered(since_date)
        self.stdout.write(
            f"{counts['written']} written, {counts['unchanged']} unchanged, "
            f"{counts['missing']} missing from storage, {not_rendered} not rendered yet "
            f"-> {folder}"
        )


def date_parse(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CommandError(f"--since {text!r} is not a date such as 2026-01-31.") from None


def folder_ready(folder: Path) -> Path:
    """Create the folder if needed and prove it is writable, before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".export_documents_probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as error:
        raise CommandError(f"Cannot write to {folder}: {error.strerror or error}.") from None
    return folder.resolve()


def rendered(since: date | None):
    documents = Document.objects.filter(status=Document.Status.RENDERED)
    if since is not None:
        documents = documents.filter(issued_at__date__gte=since)
    return documents


def latest_documents(since: date | None):
    """The newest rendered version of each document, streamed in date order."""
    newer = Document.objects.filter(
        key=OuterRef("key"), status=Document.Status.RENDERED, pk__gt=OuterRef("pk")
    )
    return (
        rendered(since).filter(~Exists(newer)).order_by("issued_at", "pk")
        .only("pk", "kind", "number", "issued_at", "file").iterator(chunk_size=BATCH)
    )


def documents_not_rendered(since: date | None) -> int:
    documents = Document.objects.exclude(status=Document.Status.RENDERED)
    if since is not None:
        documents = documents.filter(issued_at__date__gte=since)
    return documents.values("key").distinct().count()


def export_name(document: Document) -> str:
    day = document.issued_at.date().isoformat()
    return get_valid_filename(f"{day}_{document.kind}_{document.number}.pdf")


def document_export(document: Document, folder: Path) -> str:
    """Write one file; "written", "unchanged", or "missing" (gone from storage)."""
    try:
        with document.file.open("rb") as stored:
            content = stored.read()
    except (OSError, ValueError):
        return "missing"
    target = folder / export_name(document)
    if target.exists() and target.read_bytes() == content:
        return "unchanged"
    partial = target.with_suffix(".part")
    try:
        partial.write_bytes(content)
        partial.replace(target)  # never a half-written PDF under the real name
    except OSError as error:
        raise CommandError(f"Cannot write {target}: {error.strerror or error}.") from None
    return "written"
