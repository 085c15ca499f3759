"""Rate limits of the invoice page's forms (paying, saving a card, asking for a link),
counted in Django's cache: Redis in production, so that every web process counts
together. Fixed windows: one INCR per key, enough to stop card testing and mail
flooding without slowing honest customers. When the cache fails (Redis down), they
count in the database instead (RateLimitCounter): the limits never fail open."""

import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F

from ..models import RateLimitCounter

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
# Links that lead to no invoice (a client guessing tokens): per client only.
UNKNOWN_LINK_LIMITS = (Limit("unknown", "client", 20, 60),)


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
    subjects = {"invoice": invoice_id, "client": client or "unknown"}
    exceeded = False
    for limit in limits:
        exceeded |= _count(limit, subjects[limit.per]) > limit.count
    return exceeded


def _count(limit: Limit, subject) -> int:
    now = time.time()
    window = int(now) // limit.seconds
    key = f"hosted-rate:{limit.action}:{limit.per}:{subject}:{window}"
    try:
        cache.add(key, 0, timeout=limit.seconds)
        return cache.incr(key)
    except Exception:  # noqa: BLE001 - any cache failure (Redis down, key evicted)
        # The limits keep holding: counted in the database while the cache is down.
        logger.warning("hosted page rate limit counted in the database: the cache failed",
                       exc_info=True)
        expires = datetime.fromtimestamp((window + 1) * limit.seconds, tz=UTC)
        return database_count(key, expires_at=expires, now=datetime.fromtimestamp(now, tz=UTC))


def database_count(key: str, *, expires_at: datetime, now: datetime) -> int:
    """One more hit on `key` (until `expires_at`), counted in the database: every web
    process counts together, as they do in Redis. Returns the count."""
    with transaction.atomic():
        counter, created = RateLimitCounter.objects.get_or_create(
            key=key, defaults={"expires_at": expires_at}
        )
        if created:
            RateLimitCounter.objects.filter(expires_at__lt=now).delete()
        RateLimitCounter.objects.filter(pk=counter.pk).update(count=F("count") + 1)
        return RateLimitCounter.objects.values_list("count", flat=True).get(pk=counter.pk)
