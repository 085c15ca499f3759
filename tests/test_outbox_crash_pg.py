"""An outbox worker killed in the middle of an SMTP conversation with a real server
(aiosmtpd): what the server received, and that nothing is lost.

The documented window (automations/notifications/delivery.py, README "Emails"): emails
are marked sent MARK_EVERY at a time after the server accepted them, so a worker that
dies leaves at most that many accepted but unmarked; they stay leased for LEASE, then
another worker sends them again with the same Message-ID. Every email reaches the
server at least once; the copies are only those of the window.

A real process (so that it can be killed), on the committed test database: PostgreSQL.
"""

import asyncio
import signal
import threading
from datetime import timedelta

import pytest
from django.db import connection

from automations.models import NotificationSettings, OutboxMessage
from automations.notifications.delivery import LEASE, MARK_EVERY, outbox_drain

from .factories import NOW, make_charged
from .notify_support import Inbox, SMTPServer, payment_failed
from .processes import PATIENCE, OutboxDrainer

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="needs PostgreSQL (a killed process on the test database)"),
    pytest.mark.django_db(transaction=True),
]

EMAILS = 40
HELD = 30  # the server holds its answer to this message until the worker is dead


class HoldingInbox(Inbox):
    """Receives every message; the HELD-th is received in full, then never answered
    (no "250 OK"): the worker is killed while it waits for the reply."""

    def __init__(self):
        super().__init__()
        self.holding = threading.Event()

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's name
        answer = await super().handle_DATA(server, session, envelope)
        if len(self.messages) == HELD and not self.holding.is_set():
            self.holding.set()
            await asyncio.sleep(PATIENCE)
        return answer


@pytest.fixture
def holding_server(settings):
    server = SMTPServer()
    server.inbox = HoldingInbox()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", server.port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    server.start()
    yield server
    server.stop()


def queue_emails(count):
    """`count` failed-payment emails (no attachment), due at NOW, in key order = pk order."""
    NotificationSettings.load()
    for n in range(count):
        payment_failed(make_charged("sim_9995"), now=NOW, attempt=n + 1)
    return list(OutboxMessage.objects.order_by("pk"))


def test_a_drainer_killed_mid_conversation_loses_nothing_and_resends_only_its_window(
    holding_server,
):
    # given 40 emails due
    rows = queue_emails(EMAILS)
    assert len(rows) == EMAILS and {row.status for row in rows} == {"pending"}
    inbox = holding_server.inbox

    # when a drainer process sends them and is killed (SIGKILL) while the server holds
    # its answer to the 30th
    drainer = OutboxDrainer(NOW, EMAIL_URL=f"smtp://127.0.0.1:{holding_server.port}")
    try:
        drainer.wait_ready()
        drainer.go()
        assert inbox.holding.wait(PATIENCE), f"the drainer sent nothing\n{drainer.stderr()}"
        drainer.process.send_signal(signal.SIGKILL)
        status, counts = drainer.result()
    finally:
        drainer.stop()
    assert (status, counts) == (-signal.SIGKILL, None)

    # then the server has the first 30 emails, in order, once each
    received = [message["Message-ID"] for message in inbox.messages]
    assert len(received) == HELD and len(set(received)) == HELD
    # and the database knows the first MARK_EVERY were sent; the rest stay leased to the
    # dead worker: the 5 accepted but unmarked (the window) and the 10 never sent
    statuses = [row.status for row in OutboxMessage.objects.order_by("pk")]
    assert statuses == ["sent"] * MARK_EVERY + ["sending"] * (EMAILS - MARK_EVERY)
    marked = OutboxMessage.objects.filter(status="sent").order_by("pk")
    assert [row.message_id for row in marked] == received[:MARK_EVERY]

    # when another worker drains before the lease expires: nothing (the dead worker's)
    assert outbox_drain(now=NOW + timedelta(minutes=5))["sent"] == 0
    assert len(inbox.messages) == HELD

    # when it drains once the lease has expired
    assert outbox_drain(now=NOW + LEASE)["sent"] == EMAILS - MARK_EVERY

    # then every email was sent and reached the server: nothing lost
    rows = list(OutboxMessage.objects.order_by("pk"))
    assert {row.status for row in rows} == {"sent"}
    received = [message["Message-ID"] for message in inbox.messages]
    assert set(received) == {row.message_id for row in rows}
    # and the only copies are the window's 5, each with the Message-ID of its first copy
    twice = sorted({mid for mid in received if received.count(mid) > 1})
    window = sorted(row.message_id for row in rows[MARK_EVERY:HELD])
    assert twice == window and len(window) <= MARK_EVERY
    assert len(received) == EMAILS + len(window)
    # and nothing more goes out later
    assert outbox_drain(now=NOW + timedelta(days=1))["sent"] == 0
