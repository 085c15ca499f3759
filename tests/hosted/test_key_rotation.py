"""Rotating SECRET_KEY keeps live invoice page links working: with the old key in
SECRET_KEY_FALLBACKS, links sent before the rotation open, and links written after it
(emails queued before it and delivered after, the admin's link) are rebuilt with the
key the link was issued under."""

import pytest
from django.core import mail

from automations.notifications.delivery import outbox_drain
from automations.notifications.models import NotificationSettings
from invoices.hosted import hosted_url, token_for

from ..factories import NOW, make_customer, make_open

pytestmark = pytest.mark.usefixtures("frozen")

OLD_KEY = "old-key-" + "x" * 50
NEW_KEY = "new-key-" + "y" * 50


def path_of(url: str) -> str:
    return url[url.index("/i/"):]


def test_links_live_before_a_rotation_keep_working_after_it(client, settings):
    settings.SECRET_KEY = OLD_KEY
    invoice = make_open(make_customer(), collection_method="send_invoice")
    sent_before = hosted_url(invoice)

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]

    assert client.get(path_of(sent_before)).status_code == 200
    assert hosted_url(invoice) == sent_before  # written after: the same working link
    assert client.get(path_of(hosted_url(invoice))).status_code == 200


def test_an_email_queued_before_a_rotation_links_to_a_working_page(client, settings):
    settings.SECRET_KEY = OLD_KEY
    notification_settings = NotificationSettings.load()
    notification_settings.send_finalized_invoices = True
    notification_settings.save()
    make_open(make_customer(), collection_method="send_invoice")  # email queued

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    outbox_drain(now=NOW)

    body = mail.outbox[-1].body
    link = next(word for word in body.split() if "/i/" in word)
    assert client.get(path_of(link)).status_code == 200


def test_invoices_finalized_after_a_rotation_use_the_new_key(client, settings):
    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, [OLD_KEY]
    invoice = make_open(make_customer(), collection_method="send_invoice")

    settings.SECRET_KEY_FALLBACKS = []  # the old key retired: this link does not need it

    assert client.get(path_of(hosted_url(invoice))).status_code == 200


def test_without_the_old_key_in_the_fallbacks_a_link_is_not_rebuilt(settings):
    settings.SECRET_KEY = OLD_KEY
    invoice = make_open(make_customer(), collection_method="send_invoice")
    before = token_for(invoice)

    settings.SECRET_KEY, settings.SECRET_KEY_FALLBACKS = NEW_KEY, []

    assert token_for(invoice) != before
