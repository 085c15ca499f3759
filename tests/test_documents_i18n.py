"""Every string printed on a customer's PDF, read from the source (so a string missing
from the catalogues altogether is caught too), is translated and compiled in French
and in Brazilian Portuguese, as are the model labels the documents print."""

import io
from pathlib import Path

import pytest
from babel.messages.extract import extract_python
from babel.messages.mofile import read_mo
from django.conf import settings
from django.utils.translation import templatize

ROOT = Path(settings.BASE_DIR)
LOCALES = ["fr", "pt_BR"]
KEYWORDS = {"_": None, "gettext": None, "gettext_lazy": None, "ngettext": (1, 2)}
DOCUMENT_FILES = [
    *sorted((ROOT / "templates" / "documents").glob("*.html")),
    ROOT / "invoices" / "documents" / "render.py",
    ROOT / "invoices" / "documents" / "services.py",
]
# Labels of the models that documents print: statuses, payment methods, reasons.
PRINTED_LABELS = [
    "Draft", "Open", "Paid", "Void", "Uncollectible", "Issued", "Bank transfer", "Cheque",
    "Cash", "Card", "Other", "Duplicate", "Fraudulent", "Order change", "Product unsatisfactory",
]


def msgids_of(path: Path) -> set[str]:
    source = path.read_text()
    if path.suffix != ".py":
        source = templatize(source, origin=str(path))
    return {
        message
        for _line, _function, message, _comments in extract_python(
            io.BytesIO(source.encode()), KEYWORDS, [], {}
        )
        if isinstance(message, str)
    }


def compiled(locale: str) -> dict:
    with open(ROOT / "locale" / locale / "LC_MESSAGES" / "django.mo", "rb") as f:
        return {m.id: m.string for m in read_mo(f) if isinstance(m.id, str) and not m.context}


DOCUMENT_MSGIDS = sorted(set().union(*(msgids_of(path) for path in DOCUMENT_FILES)))


def test_the_document_files_were_read():
    assert len(DOCUMENT_MSGIDS) > 40
    assert {"Invoice %(number)s", "Amount due", "Bill to"} <= set(DOCUMENT_MSGIDS)


@pytest.mark.parametrize("locale", LOCALES)
def test_every_string_of_the_documents_is_translated_and_compiled(locale):
    catalogue = compiled(locale)

    missing = [m for m in [*DOCUMENT_MSGIDS, *PRINTED_LABELS] if not catalogue.get(m)]

    assert missing == []
