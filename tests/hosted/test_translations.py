"""Every string a customer sees on the invoice page and in its emails is translated, in
French and in Brazilian Portuguese, and the compiled catalogues are up to date."""

import io
from pathlib import Path

import pytest
from babel.messages.extract import extract_python
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po
from django.conf import settings
from django.utils.translation import templatize

from invoices.gateways.base import DEFAULT_FAILURE_MESSAGE, FAILURE_MESSAGES
from invoices.hosted.payments import DECLINE_MESSAGES

ROOT = Path(settings.BASE_DIR)
LOCALES = ["fr", "pt_BR"]
KEYWORDS = {"_": None, "gettext": None, "gettext_lazy": None, "gettext_noop": None,
            "ngettext": (1, 2), "pgettext_lazy": ((1, "c"), 2)}
CUSTOMER_FILES = [
    *sorted((ROOT / "templates" / "hosted").rglob("*.html")),
    *sorted((ROOT / "templates" / "hosted").rglob("*.txt")),
    *sorted((ROOT / "invoices" / "hosted").glob("*.py")),
]


def msgids_of(path: Path) -> set:
    source = path.read_text()
    if path.suffix != ".py":
        source = templatize(source, origin=str(path))
    found = set()
    for _line, _func, message, _comments in extract_python(
        io.BytesIO(source.encode()), KEYWORDS, [], {}
    ):
        if isinstance(message, str):
            found.add(message)
        elif message and all(message):
            found.add(tuple(message))
    return found


def catalogue(locale: str, compiled: bool):
    folder = ROOT / "locale" / locale / "LC_MESSAGES"
    if compiled:
        with open(folder / "django.mo", "rb") as f:
            return {as_key(m.id): m.string for m in read_mo(f) if m.id}
    with open(folder / "django.po", "rb") as f:
        return {as_key(m.id): m for m in read_po(f) if m.id}


def as_key(msgid):
    return msgid if isinstance(msgid, str) else tuple(msgid)


CUSTOMER_MSGIDS = sorted({m for path in CUSTOMER_FILES for m in msgids_of(path)}, key=str)
STAFF_ONLY = {  # raised by the doors staff use from the admin, never shown on the page
    "A draft has no invoice page; finalize it first.",
    "This invoice has no live page link to revoke.",
}


def test_the_customer_files_were_read():
    assert len(CUSTOMER_MSGIDS) > 80 and "Check your inbox" in CUSTOMER_MSGIDS


@pytest.mark.parametrize("locale", LOCALES)
def test_every_customer_string_is_translated_and_compiled(locale):
    compiled = catalogue(locale, compiled=True)
    wanted = [m for m in CUSTOMER_MSGIDS if isinstance(m, str) and m not in STAFF_ONLY]
    missing = [m for m in wanted if not compiled.get(m)]
    assert missing == []


@pytest.mark.parametrize("locale", LOCALES)
def test_no_translation_is_fuzzy_and_placeholders_survive(locale):
    import re

    placeholder = re.compile(r"%\(\w+\)[sd]|%%")
    entries = catalogue(locale, compiled=False)
    fuzzy = [msgid for msgid, m in entries.items() if m.fuzzy]
    broken = [
        msgid for msgid, m in entries.items()
        if isinstance(msgid, str) and m.string
        and sorted(placeholder.findall(msgid)) != sorted(placeholder.findall(m.string))
    ]
    assert fuzzy == [] and broken == []


def test_the_compiled_portuguese_catalogue_matches_its_po_file():
    # Plural forms: Babel reads them as a tuple from a .po file, a list from a .mo one.
    po = {msgid: as_key(m.string) for msgid, m in catalogue("pt_BR", compiled=False).items()}
    compiled = {msgid: as_key(s) for msgid, s in catalogue("pt_BR", compiled=True).items()}
    assert compiled == po


def test_every_decline_message_of_the_gateways_is_translated():
    assert set(FAILURE_MESSAGES.values()) | {DEFAULT_FAILURE_MESSAGE} == set(DECLINE_MESSAGES)
