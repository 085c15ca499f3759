"""The invoice page rendered once per state of the invoice, in each web process.

Rendering the page's templates was most of a visit's cost (about half of the CPU time),
and every visit of one invoice in one state renders the same HTML but for a few values
that must be new on every response: the CSP nonce, the CSRF token and the pay forms'
nonces. So the page is rendered with slots for those values and kept, keyed by
everything it is rendered from (`page_key`); a visit fills the slots of the kept page.

Nothing is ever invalidated: a change of anything the page shows (the invoice, its
customer, payments and attempts, the branding, the link and its settings, the language,
the clock's verdict on "past due") makes a different key, so a page kept for a former
state is simply not found again, and falls out of the bounded store. The store lives
in the process's memory (the web tier keeps no state elsewhere) and holds at most
PAGES_KEPT pages and KEPT_SIZE characters. The invoice's lines are not in the key: they
are frozen once the invoice is finalized, and only finalized invoices have a page.
Templates and translations are read once per process too, except with DEBUG on, when
pages are not kept either (a template being edited shows at once).
"""

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from django.core.signals import setting_changed
from django.dispatch import receiver

from .kept import Kept

PAGES_KEPT = 256  # about 15 KB each, more for long invoices: at most
KEPT_SIZE = 8_000_000  # characters in all, whatever the pages' sizes

# Slot markers: random per process, so that no text on a page (a memo, a line's
# description) can be taken for one. Letters and digits only: escaping leaves them alone.
_MARK = f"slot{secrets.token_hex(8)}"
SLOTS = ("csp", "csrf", "saved", "card")
_SLOT_RE = re.compile(f"{_MARK}({'|'.join(SLOTS)})")


def slot(name: str) -> str:
    """The marker rendered where the value `name` goes."""
    assert name in SLOTS, name
    return f"{_MARK}{name}"


@dataclass(frozen=True)
class SlottedPage:
    """Rendered HTML cut at its slots: texts[0], slots[0], texts[1], slots[1], ..."""

    texts: tuple[str, ...]
    slots: tuple[str, ...]

    @property
    def size(self) -> int:
        return sum(map(len, self.texts))

    @classmethod
    def cut(cls, html: str) -> "SlottedPage":
        pieces = _SLOT_RE.split(html)
        return cls(texts=tuple(pieces[0::2]), slots=tuple(pieces[1::2]))

    def fill(self, values: dict[str, Callable[[], str]]) -> str:
        """The page with each slot filled by its value. A value is made once per page
        (the CSRF token appears in several forms) and only when the page has its slot
        (asking for a CSRF token sets the CSRF cookie)."""
        made = {name: values[name]() for name in set(self.slots)}
        out = [self.texts[0]]
        for name, text in zip(self.slots, self.texts[1:], strict=True):
            out += [made[name], text]
        return "".join(out)


def page_key(*parts) -> bytes:
    """A digest of everything a page is rendered from: rows and choices whose repr is
    complete (str, int, dates, Decimals, JSON dicts and lists, tuples of those)."""
    return hashlib.blake2b(repr(parts).encode(), digest_size=16).digest()


class PageStore(Kept):
    """The pages last used, by key, at most `count` of them and `size` characters in
    all (thread-safe, for threaded servers)."""

    def __init__(self, count: int = PAGES_KEPT, size: int = KEPT_SIZE):
        super().__init__(count, size, size_of=lambda page: page.size)


rendered_pages = PageStore()


@receiver(setting_changed)
def _settings_changed(**kwargs) -> None:
    """Settings shape pages (languages, formats, the gateway's card form): a page kept
    under other settings (tests override them) is not the page any more."""
    rendered_pages.clear()
