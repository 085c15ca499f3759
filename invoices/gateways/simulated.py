"""The simulated gateway: the embedded default, with documented test cards.

Each test card behaves deterministically from (card, now, the card's history with the
customer): no randomness, so tests, test clocks and `manage.py simulate` replay exactly.
Charges are rows (SimulatedCharge), so idempotency and `retrieve` survive a crashed
worker. Time only moves through the `now` the caller passes; a `processing` charge
settles when `refresh` is called at or after its settle time.

The table of cards is documented in docs/gateways.md; keep both in step.
"""

import zoneinfo
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Min

from customers.clock_due import in_one_transaction

from ..bulkwrite import rows_insert
from .base import ChargeRequest, ChargeResult, Gateway, GatewayError
from .models import SimulatedCharge

SETTLE_AFTER = timedelta(days=2)
RECOVER_AFTER = timedelta(days=3)
GOOD_HOURS = range(8, 11)  # 08:00 to 10:59 in the customer's time zone
PAYDAYS = frozenset(range(1, 6)) | frozenset(range(25, 32))


@dataclass(frozen=True)
class SimulatedCard:
    number: str  # what a customer types on the hosted page; never stored
    token: str  # what is stored as the payment method's gateway reference
    brand: str
    kind: str  # succeed | decline | processing | action | recover | hours | payday
    decline_code: str = ""
    behaviour: str = ""
    funding: str = "credit"  # what the gateway reports (credit, debit, prepaid)

    @property
    def last4(self) -> str:
        return self.number[-4:]


def _card(number, token, kind, decline_code="", behaviour="", brand="visa", funding="credit"):
    return SimulatedCard(number, token, brand, kind, decline_code, behaviour, funding)


SIMULATED_CARDS = (
    _card("4242424242424242", "sim_4242", "succeed", behaviour="Succeeds."),
    _card("4000000000000077", "sim_0077", "succeed", behaviour="Succeeds."),
    _card("5555555555554444", "sim_4444", "succeed", behaviour="Succeeds (Mastercard).",
          brand="mastercard"),
    _card("4000000000009995", "sim_9995", "decline", "insufficient_funds", "Declines.",
          funding="prepaid"),
    _card("4000000000000002", "sim_0002", "decline", "generic_decline", "Declines."),
    _card("4000000000000119", "sim_0119", "decline", "do_not_honor", "Declines."),
    _card("4000000000000135", "sim_0135", "decline", "processing_error", "Declines."),
    _card("4000000000009979", "sim_9979", "decline", "stolen_card", "Declines."),
    _card("4000000000009987", "sim_9987", "decline", "lost_card", "Declines."),
    _card("4000000000000069", "sim_0069", "decline", "expired_card", "Declines."),
    _card("4242424242424241", "sim_4241", "decline", "incorrect_number",
          "Declines (the number fails the Luhn check on purpose)."),
    _card("4100000000000019", "sim_0019", "decline", "fraudulent", "Declines."),
    _card("4000002760003184", "sim_3184", "decline", "authentication_required", "Declines."),
    _card("4000000000002222", "sim_2222", "processing",
          behaviour="Stays processing; settles succeeded 2 days later (on refresh)."),
    _card("4000000000002230", "sim_2230", "processing", "insufficient_funds",
          "Stays processing; settles failed 2 days later (on refresh)."),
    _card("4000002500003155", "sim_3155", "action",
          behaviour="Requires customer action (authentication); never completes off-session."),
    _card("4000000000000333", "sim_0333", "recover", "insufficient_funds",
          "Declines until 3 days after its first decline for this customer, then succeeds.",
          funding="debit"),
    _card("4000000000000812", "sim_0812", "hours", "try_again_later",
          "Succeeds only from 08:00 to 10:59 in the customer's time zone (the charge's "
          "customer_timezone metadata; UTC without it); declines at other hours."),
    _card("4000000000002537", "sim_2537", "payday", "insufficient_funds",
          "Succeeds only on days 1-5 and 25-31 of the month (UTC); declines on other days.",
          funding="debit"),
)
CARDS_BY_TOKEN = {card.token: card for card in SIMULATED_CARDS}
CARDS_BY_NUMBER = {card.number: card for card in SIMULATED_CARDS}


def simulated_card_for_number(number: str) -> SimulatedCard:
    """The test card a customer typed (spaces allowed). Only documented cards exist here."""
    digits = "".join(str(number).split())
    try:
        return CARDS_BY_NUMBER[digits]
    except KeyError:
        raise ValueError(
            "This is not one of the simulated gateway's test cards (see docs/gateways.md)."
        ) from None


def card_outcome(
    card: SimulatedCard, *, now: datetime, first_decline_at=None, timezone: str = "UTC"
) -> tuple[str, str]:
    """(status, decline_code) of a charge on `card` at `now`. `first_decline_at` is when
    this card was first declined for the customer (only "recover" cards look at it);
    `timezone` is the customer's (only "hours" cards look at it)."""
    utc = now.astimezone(UTC)
    if card.kind == "succeed":
        return "succeeded", ""
    if card.kind == "decline":
        return "failed", card.decline_code
    if card.kind == "processing":
        return "processing", ""
    if card.kind == "action":
        return "requires_action", ""
    if card.kind == "recover":
        recovered = first_decline_at is not None and now >= first_decline_at + RECOVER_AFTER
        return ("succeeded", "") if recovered else ("failed", card.decline_code)
    if card.kind == "hours":
        local = now.astimezone(_zone(timezone))
        return ("succeeded", "") if local.hour in GOOD_HOURS else ("failed", card.decline_code)
    if card.kind == "payday":
        return ("succeeded", "") if utc.day in PAYDAYS else ("failed", card.decline_code)
    raise ValueError(f"Unknown simulated card kind {card.kind!r}.")


def settled_outcome(card: SimulatedCard) -> tuple[str, str]:
    """How a processing card settles."""
    return ("failed", card.decline_code) if card.decline_code else ("succeeded", "")


class SimulatedGateway(Gateway):
    def charge(self, request: ChargeRequest, *, now: datetime) -> ChargeResult:
        _check_aware(now)
        card = _card_for_token(request.payment_method)
        status, decline_code = card_outcome(
            card, now=now, first_decline_at=_first_decline_at(card, request),
            timezone=_timezone_of(request),
        )
        row = _charge_row(request, card, now, (status, decline_code))
        fields = {f.name: getattr(row, f.name) for f in SimulatedCharge._meta.concrete_fields
                  if f.name not in ("id", "idempotency_key")}
        charge, created = SimulatedCharge.objects.get_or_create(
            idempotency_key=request.idempotency_key, defaults=fields
        )
        # An existing row is the first charge with this key (an earlier call, or a
        # concurrent one that won the race on the unique key): answer with it.
        return charge_result(charge) if created else _replay(charge, request)

    def charge_many(self, items):
        """The batch path of the collection sweep: one transaction for the whole batch
        (a real gateway's batch API would be one request)."""
        for _request, now in items:
            _check_aware(now)
        keys = [request.idempotency_key for request, _now in items]
        # Within one transaction (a clock in a simulation: clock_due.one_transaction), no
        # savepoint: the keys are those of attempts this same uncommitted transaction
        # wrote, so no other call can use them first (the fallback below never runs there).
        nested = in_one_transaction()
        try:
            with transaction.atomic(savepoint=not nested):
                existing = SimulatedCharge.objects.in_bulk(keys, field_name="idempotency_key")
                first_declines = _first_declines(
                    [request for request, _now in items if request.idempotency_key not in existing]
                )
                new = {}
                for request, now in items:
                    if request.idempotency_key in existing or request.idempotency_key in new:
                        continue
                    card = CARDS_BY_TOKEN.get(request.payment_method)
                    if card is None:
                        continue
                    first = first_declines.get((card.token, request.customer_reference))
                    outcome = card_outcome(
                        card, now=now, first_decline_at=first, timezone=_timezone_of(request)
                    )
                    new[request.idempotency_key] = _charge_row(request, card, now, outcome)
                rows_insert(SimulatedCharge, list(new.values()))
        except IntegrityError:
            # A concurrent call used one of the keys: fall back to one by one, where each
            # key's first charge wins.
            return super().charge_many(items)
        outcomes = []
        for request, _now in items:
            key = request.idempotency_key
            if request.payment_method not in CARDS_BY_TOKEN:
                outcomes.append(GatewayError(
                    f"Unknown simulated payment method {request.payment_method!r}: "
                    "not a test card token."
                ))
            elif key in existing:
                try:
                    outcomes.append(_replay(existing[key], request))
                except GatewayError as error:
                    outcomes.append(error)
            else:
                outcomes.append(charge_result(new[key]))
        return outcomes

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        charge = SimulatedCharge.objects.filter(idempotency_key=idempotency_key).first()
        return charge_result(charge) if charge is not None else None

    def refresh(self, gateway_reference: str, *, now: datetime) -> ChargeResult:
        _check_aware(now)
        return _refreshed(_charge_for_reference(gateway_reference), now)

    def refresh_many(self, items):
        """The charges read in one query (a simulation checks its processing payments
        every hour); each settles as refresh() settles it."""
        ids = [_charge_id(reference) for reference, _now in items]
        charges = SimulatedCharge.objects.in_bulk([pk for pk in ids if pk is not None])
        outcomes = []
        for (reference, now), pk in zip(items, ids, strict=True):
            try:
                _check_aware(now)
                if pk not in charges:
                    raise GatewayError(f"No simulated charge {reference!r}.")
                outcomes.append(_refreshed(charges[pk], now))
            except GatewayError as error:
                outcomes.append(error)
            except Exception as error:  # noqa: BLE001 - as refresh_safely
                outcomes.append(GatewayError(f"{type(error).__name__}: {error}"))
        return outcomes


def _refreshed(charge: SimulatedCharge, now: datetime) -> ChargeResult:
    if charge.status == SimulatedCharge.Status.PROCESSING and now >= charge.settles_at:
        status, decline_code = settled_outcome(_card_for_token(charge.card_token))
        # Conditional update: two refreshes racing settle it once, the same way.
        SimulatedCharge.objects.filter(
            pk=charge.pk, status=SimulatedCharge.Status.PROCESSING
        ).update(status=status, decline_code=decline_code)
        charge.refresh_from_db()
    return charge_result(charge)


def charge_result(charge: SimulatedCharge) -> ChargeResult:
    raw = {
        "id": charge.reference,
        "idempotency_key": charge.idempotency_key,
        "card": charge.card_token,
        "amount": charge.amount,
        "currency": charge.currency,
        "status": charge.status,
        "decline_code": charge.decline_code,
        "created_at": charge.created_at.isoformat(),
        "settles_at": charge.settles_at.isoformat() if charge.settles_at else None,
    }
    reported = {"amount": charge.amount, "currency": charge.currency,
                "metadata": {"idempotency_key": charge.idempotency_key}}
    card = CARDS_BY_TOKEN.get(charge.card_token)
    funding = card.funding if card is not None else "unknown"
    if charge.status == SimulatedCharge.Status.FAILED:
        return replace(ChargeResult.declined(
            charge.decline_code, gateway_reference=charge.reference, raw=raw, funding=funding
        ), **reported)
    received = charge.amount if charge.status == SimulatedCharge.Status.SUCCEEDED else 0
    return ChargeResult(
        status=charge.status, gateway_reference=charge.reference,
        amount_received=received, raw=raw, funding=funding, **reported,
    )


def _replay(charge: SimulatedCharge, request: ChargeRequest) -> ChargeResult:
    same = (charge.card_token, charge.amount, charge.currency) == (
        request.payment_method, request.amount, request.currency
    )
    if not same:
        raise GatewayError(
            f"Idempotency key {request.idempotency_key!r} was already used for a different "
            "charge (card, amount or currency differ)."
        )
    return charge_result(charge)


def _charge_row(request: ChargeRequest, card: SimulatedCard, now, outcome) -> SimulatedCharge:
    status, decline_code = outcome
    return SimulatedCharge(
        idempotency_key=request.idempotency_key,
        card_token=card.token,
        customer_reference=request.customer_reference,
        amount=request.amount,
        currency=request.currency,
        status=status,
        decline_code=decline_code,
        created_at=now,
        settles_at=now + SETTLE_AFTER if status == "processing" else None,
    )


def _first_declines(requests: list[ChargeRequest]) -> dict:
    """(card token, customer reference) -> first decline, for the "recover" cards among
    `requests`, in one query."""
    wanted = {
        (request.payment_method, request.customer_reference)
        for request in requests
        if getattr(CARDS_BY_TOKEN.get(request.payment_method), "kind", "") == "recover"
    }
    if not wanted:
        return {}
    rows = (
        SimulatedCharge.objects.filter(
            card_token__in={token for token, _ref in wanted},
            customer_reference__in={ref for _token, ref in wanted},
            status=SimulatedCharge.Status.FAILED,
        )
        .values("card_token", "customer_reference")
        .annotate(first=Min("created_at"))
    )
    return {(row["card_token"], row["customer_reference"]): row["first"] for row in rows}


def _first_decline_at(card: SimulatedCard, request: ChargeRequest):
    if card.kind != "recover":
        return None
    return (
        SimulatedCharge.objects.filter(
            card_token=card.token,
            customer_reference=request.customer_reference,
            status=SimulatedCharge.Status.FAILED,
        )
        .order_by("created_at")
        .values_list("created_at", flat=True)
        .first()
    )


def _card_for_token(token: str) -> SimulatedCard:
    try:
        return CARDS_BY_TOKEN[token]
    except KeyError:
        raise GatewayError(
            f"Unknown simulated payment method {token!r}: not a test card token."
        ) from None


def _charge_for_reference(reference: str) -> SimulatedCharge:
    pk = _charge_id(reference)
    charge = SimulatedCharge.objects.filter(pk=pk).first() if pk is not None else None
    if charge is None:
        raise GatewayError(f"No simulated charge {reference!r}.")
    return charge


def _charge_id(reference: str) -> int | None:
    prefix, _sep, pk = str(reference).partition("_")
    return int(pk) if prefix == "simch" and pk.isdigit() else None


def _timezone_of(request: ChargeRequest) -> str:
    return str(request.metadata.get("customer_timezone") or "UTC")


def _zone(name: str):
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return UTC


def _check_aware(now: datetime) -> None:
    if not isinstance(now, datetime) or now.tzinfo is None:
        raise ValueError("now must be a timezone-aware datetime.")

