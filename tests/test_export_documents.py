"""manage.py export_documents: the stored PDFs in a folder for the period close."""

import os
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from invoices.credit_notes import CreditLine, credit_note_create
from invoices.documents.models import Document
from invoices.services import invoice_record_payment

from .factories import NOW, STAFF, make_customer, make_open
from .pdfs import media, pdf_text, render_pending  # noqa: F401  (media: fixture)

pytestmark = pytest.mark.usefixtures("media")


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def export(*args) -> str:
    out = StringIO()
    call_command("export_documents", *args, stdout=out)
    return out.getvalue()


def test_exports_each_documents_newest_version_with_sortable_names(tmp_path):
    invoice = make_open(make_customer(), lines=((1, 10000),))
    note = credit_note_create(invoice, lines=[CreditLine(amount=1000)], now=NOW, actor=STAFF)
    invoice_record_payment(invoice, amount=9000, method="cheque", now=NOW, actor=STAFF)
    render_pending()  # invoice (paid version), credit note, receipt

    summary = export("--to", str(tmp_path / "close"))

    names = sorted(os.listdir(tmp_path / "close"))
    assert names == sorted([
        f"2026-03-02_invoice_{invoice.number}.pdf",
        f"2026-03-02_credit_note_{note.number}.pdf",
        f"2026-03-02_receipt_{invoice.number}-R{invoice.payments.get().pk}.pdf",
    ])
    assert "3 written, 0 unchanged" in summary
    exported = (tmp_path / "close" / f"2026-03-02_invoice_{invoice.number}.pdf").read_bytes()
    assert "PAID" in pdf_text(exported).upper()


def test_a_second_run_writes_nothing_and_a_newer_version_replaces_the_file(tmp_path):
    folder = str(tmp_path / "close")
    invoice = make_open(lines=((1, 10000),))
    render_pending()
    export("--to", folder)

    assert "0 written, 1 unchanged" in export("--to", folder)

    invoice_record_payment(invoice, amount=10000, method="cheque", now=NOW, actor=STAFF)
    render_pending()
    assert "2 written, 0 unchanged" in export("--to", folder)  # invoice + receipt
    assert len(os.listdir(folder)) == 2


def test_since_keeps_the_period(tmp_path):
    make_open(now=NOW - timedelta(days=40))
    recent = make_open()
    render_pending()

    export("--to", str(tmp_path / "close"), "--since", "2026-03-01")

    assert os.listdir(tmp_path / "close") == [f"2026-03-02_invoice_{recent.number}.pdf"]


def test_documents_not_rendered_or_gone_are_counted_not_exported(tmp_path):
    make_open(), make_open()
    render_pending()
    gone = Document.objects.first()
    gone.file.storage.delete(gone.file.name)
    make_open()  # pending

    summary = export("--to", str(tmp_path))

    assert "1 written" in summary and "1 missing from storage" in summary
    assert "1 not rendered yet" in summary


@pytest.mark.parametrize("since", ["2026-13-01", "yesterday"])
def test_a_bad_date_is_a_clear_error(tmp_path, since):
    with pytest.raises(CommandError, match="is not a date such as 2026-01-31"):
        export("--to", str(tmp_path), "--since", since)


def test_an_unwritable_folder_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")

    with pytest.raises(CommandError, match="Cannot write to"):
        export("--to", str(blocker / "close"))
