"""Reading the PDFs the product writes, as a customer's PDF reader would."""

import io

import pytest
from pypdf import PdfReader

from customers.clock import system_now
from invoices.documents.models import Document
from invoices.documents.services import documents_render_due


def pdf_text(content: bytes) -> str:
    """All the text, whitespace normalised (Babel's narrow no-break spaces included)."""
    reader = PdfReader(io.BytesIO(content))
    text = " ".join(page.extract_text() for page in reader.pages)
    return " ".join(text.replace("\u202f", " ").replace("\xa0", " ").split())


def pdf_pages(content: bytes) -> list[str]:
    """The text of each page, whitespace normalised as pdf_text."""
    reader = PdfReader(io.BytesIO(content))
    return [
        " ".join(page.extract_text().replace("\u202f", " ").replace("\xa0", " ").split())
        for page in reader.pages
    ]


def stored(document: Document) -> bytes:
    with document.file.open("rb") as f:
        return f.read()


def render_pending(now=None) -> dict:
    return documents_render_due(now=now or system_now())


@pytest.fixture
def media(settings, tmp_path):
    """Stored files go to a folder of the test's own."""
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"
