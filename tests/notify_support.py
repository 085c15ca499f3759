"""Helpers for the notification tests: a real SMTP server (aiosmtpd) on a free port,
fake PDFs while documents are out of the picture, and events as collection writes them."""

import socket
import threading
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller

from automations.models import OutboxMessage
from customers.actors import Actor
from invoices.events import event_record

COLLECTION = Actor.system("collection")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Inbox:
    """What the SMTP server received: parsed messages, in order."""

    def __init__(self):
        self.messages = []
        self.connections = 0
        self.lock = threading.Lock()

    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802
        with self.lock:
            self.connections += 1
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        message = message_from_bytes(envelope.content, policy=policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 OK"


class SMTPServer:
    def __init__(self):
        self.port = free_port()
        self.inbox = Inbox()
        self.controller = None

    def start(self):
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def smtp_server(settings):
    server = SMTPServer()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    server.start()
    yield server
    server.stop()


def fake_pdf(spec):
    return f"{spec['kind']}-{spec['id']}.pdf", b"%PDF-1.4 test document\n"


@pytest.fixture
def pdfs(monkeypatch):
    """PDF attachments without the renderer (the docs branch's document_ensure)."""
    monkeypatch.setattr("automations.notifications.delivery.attachment_load", fake_pdf)


def payment_failed(invoice, *, now, attempt, hard=False, code="insufficient_funds",
                   next_attempt=None):
    return event_record(
        "invoice.payment_failed", now=now, actor=COLLECTION, invoice=invoice,
        data={"attempt": attempt, "amount": invoice.amount_remaining, "decline_code": code,
              "failure_message": "Your card has insufficient funds.", "hard_decline": hard,
              "next_payment_attempt": next_attempt.isoformat() if next_attempt else None},
    )


def keys():
    return sorted(OutboxMessage.objects.values_list("key", flat=True))
