"""The quick start's console emails read as emails: headers, text, attachments named
with their sizes, never a base64 dump."""

import io

from django.core.mail import EmailMultiAlternatives

from automations.notifications.console import EmailBackend


def test_console_emails_show_headers_and_attachment_sizes_not_base64():
    stream = io.StringIO()
    message = EmailMultiAlternatives(
        "Invoice ACME-0001", "Hello,\nyour invoice is attached.", "billing@demo.example",
        ["ap@acme.example"],
    )
    message.attach("ACME-0001.pdf", b"%PDF-1.7 " * 5000, "application/pdf")
    message.attach_alternative("<p>Hello</p>", "text/html")

    EmailBackend(stream=stream).send_messages([message])

    shown = stream.getvalue()
    assert "Subject: Invoice ACME-0001" in shown and "To: ap@acme.example" in shown
    assert "your invoice is attached." in shown
    assert "[attachment: ACME-0001.pdf, 45,000 bytes]" in shown
    assert "base64" not in shown.lower() and "JVBER" not in shown


def test_console_emails_show_headers_in_plain_words_not_mime_encoded():
    stream = io.StringIO()
    message = EmailMultiAlternatives(
        "Reçu pour votre paiement de 1 428,93 €", "Bonjour,", "Facturation <billing@demo.example>",
        ["Société Générale <compta@acme.example>"],
    )

    EmailBackend(stream=stream).send_messages([message])

    shown = stream.getvalue()
    assert "Subject: Reçu pour votre paiement de 1 428,93 €" in shown
    assert "To: Société Générale <compta@acme.example>" in shown
    assert "=?utf-8?" not in shown
