"""The console email backend of the embedded default (EMAIL_URL unset): each email as a
person reads it, its headers, its text body and the names and sizes of its attachments,
instead of Django's raw MIME message with every PDF in base64."""

from email.header import decode_header, make_header

from django.core.mail.backends.console import EmailBackend as DjangoConsoleBackend

SHOWN_HEADERS = ("Subject", "From", "To", "Cc", "Reply-To", "Message-ID")


class EmailBackend(DjangoConsoleBackend):
    def write_message(self, message):
        mime = message.message()
        lines = [f"{name}: {readable(mime[name])}" for name in SHOWN_HEADERS if mime[name]]
        lines.append("")
        lines.append(message.body.rstrip())
        for attachment in message.attachments:
            name, size = attachment_summary(attachment)
            lines.append(f"[attachment: {name}, {size:,} bytes]")
        for alternative in getattr(message, "alternatives", []):
            lines.append(f"[alternative: {alternative[1]}, {len(alternative[0]):,} characters]")
        self.stream.write("\n".join(lines) + "\n" + "-" * 79 + "\n")


def attachment_summary(attachment) -> tuple[str, int]:
    if isinstance(attachment, tuple):  # (filename, content, mimetype)
        name, content = attachment[0], attachment[1]
    else:  # a MIMEBase part
        name = attachment.get_filename() or attachment.get_content_type()
        content = attachment.get_payload(decode=True) or b""
    return name or "-", len(content)


def readable(value) -> str:
    """A header as people read it: "Reçu pour votre paiement", not its MIME encoding
    ("=?utf-8?q?Re=C3=A7u_pour...?=")."""
    return str(make_header(decode_header(str(value))))
