"""Rate limits of the invoice page's forms (paying, saving a card, asking for a link),
counted in Django's cache: Redis in production, so that every web process counts
together. Fixed windows: one INCR per key, enough to stop card testing and mail
flooding without slowing honest customers."""

import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Limit:
    action: str  # "pay", "card", "link"
    per: str  # "invoice" or "client" (the client's IP address)
    count: int  # hits allowed per window
    seconds: int  # window length


PAY_LIMITS = (Limit("pay", "invoice", 10, 600), Limit("pay", "client", 30, 600))
CARD_LIMITS = (Limit("card", "invoice", 5, 600), Limit("card", "client", 20, 600))
LINK_LIMITS = (Limit("link", "invoice", 3, 3600), Limit("link", "client", 10, 3600))


def client_address(request) -> str:
    """The client's IP: behind our proxy, the address it appended to X-Forwarded-For
    (the last one: anything before it was written by the client)."""
    if settings.BEHIND_PROXY:
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")[-1].strip()
        if forwarded:
            return forwarded
    return request.META.get("REMOTE_ADDR", "")


def rate_limit_hit(limits: tuple[Limit, ...], *, invoice_id: int, client: str) -> bool:
    """Count one hit against each limit; True when any of them is exceeded."""
    subjects = {"invoice": invoice_id, "client": client}
    exceeded = False
    for limit in limits:
        exceeded |= _count(limit, subjects[limit.per]) > limit.count
    return exceeded


def _count(limit: Limit, subject) -> int:
    window = int(time.time()) // limit.seconds
    key = f"hosted-rate:{limit.action}:{limit.per}:{subject}:{window}"
    try:
        cache.add(key, 0, timeout=limit.seconds)
        return cache.incr(key)
    except Exception:  # noqa: BLE001 - any cache failure (Redis down, key evicted)
        # Fail open: a broken cache must not stop customers from paying; the gateway's
        # own fraud controls still apply.
        logger.warning("hosted page rate limit not counted: the cache failed", exc_info=True)
        return 0
