"""Invoice page tokens never reach the logs: Django logs the path of every 4xx and 5xx
response ("Gone: /i/<token>/"), and a token is as good as the link it is part of."""

import logging
import re

TOKEN_IN_PATH = re.compile(r"(/i/)[A-Za-z0-9_%-]{16,}")


def token_redact(text: str) -> str:
    return TOKEN_IN_PATH.sub(r"\1<token>", text)


class RedactInvoiceTokens(logging.Filter):
    """A handler filter: the record's message with invoice page tokens replaced."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = token_redact(message)
        if redacted != message:
            record.msg, record.args = redacted, ()
        return True
