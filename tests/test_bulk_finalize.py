"""The sweep's bulk finalization: the same invoices as the one-row door, gapless numbers,
failures that do not stop a batch, and two sweeps at once on PostgreSQL."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automations.models import NotificationSchedule, NotificationSettings
from customers.clock_due import one_transaction
from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction
from invoices.bulk import invoices_finalize_bulk
from invoices.events import event_record
from invoices.hosted import token_from_salt, token_hash
from invoices.models import (
    Event,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoicingSettings,
)
from invoices.numbering import numbers_take_many
from invoices.services import invoice_create, invoice_finalize, invoice_line_add
from invoices.sweeps import AUTO, due_drafts, finalize_due_drafts

from .factories import NOW, STAFF, make_customer, make_draft, make_tax_rate

S = Invoice.Status
HOUR = timedelta(hours=1)
LATER = NOW + 3 * HOUR
ON_PG = connection.vendor == "postgresql"


def numbering(kind):
    InvoicingSettings.load()
    InvoicingSettings.objects.filter(pk=1).update(numbering=kind, account_prefix="INV")


def varied_drafts():
    """Drafts covering the rules of finalization, due one minute apart."""
    vat = make_tax_rate("20")
    gst = make_tax_rate("10", inclusive=True, name="GST")
    late_zone = make_customer(invoice_prefix="KIWI", timezone="Pacific/Auckland")
    plain = make_customer(invoice_prefix="PLAIN", currency="USD")
    credit = make_customer(invoice_prefix="CRED")
    balance_transaction_create(
        customer=credit, amount=-15000, type="adjustment", now=NOW, actor=STAFF
    )
    at = iter(NOW + timedelta(minutes=n) for n in range(100))
    drafts = [
        make_draft(late_zone, now=next(at), lines=((2, 1999), (1, 500)), tax_rates=[vat],
                   discount_percent=Decimal("12.5")),
        make_draft(plain, now=next(at), lines=((3, 3333),), tax_rates=[gst],
                   due_date=NOW.date() + timedelta(days=10), discount_amount=700),
        make_draft(late_zone, now=next(at), days_until_due=7),
        make_draft(plain, now=next(at), collection_method="charge_automatically",
                   lines=((1, 12000), (5, 99)), tax_rates=[vat]),
        make_draft(plain, now=next(at), lines=((1, 0),)),  # nothing due: paid at once
        make_draft(credit, now=next(at), lines=((1, 10000),), tax_rates=[vat]),  # all covered
        make_draft(credit, now=next(at), lines=((1, 10000),)),  # the rest of the credit
        make_draft(plain, now=next(at), lines=()),  # refused: no lines
        make_draft(late_zone, now=next(at), due_date=NOW.date() - timedelta(days=1)),  # refused
        make_draft(late_zone, now=next(at), lines=((4, 2500),), tax_rates=[gst]),
    ]
    discounted = make_draft(plain, now=next(at), lines=())
    invoice_line_add(discounted, description="Licence", quantity=3, unit_amount=4000,
                     tax_rates=[vat], discount_percent=Decimal("10"), discount_amount=150)
    invoice_line_add(discounted, description="Setup", quantity=1, unit_amount=9900)
    # lines written by an import, whose computed amounts finalization must fill in
    InvoiceLine.objects.filter(invoice=drafts[0]).update(amount=0, tax_amount=0)
    return [*drafts, discounted]


def finalize_one_by_one(drafts, *, now, at_scheduled_time):
    """The reference: the one-row door per draft, in due order, failures recorded as the
    sweep records them."""
    for draft in sorted(drafts, key=lambda d: (d.automatically_finalizes_at, d.pk)):
        moment = draft.automatically_finalizes_at if at_scheduled_time else now
        try:
            with transaction.atomic():
                invoice_finalize(draft, now=moment, actor=AUTO)
        except DomainError as error:
            Invoice.objects.filter(pk=draft.pk).update(automatically_finalizes_at=None)
            event_record("invoice.finalization_failed", now=moment, actor=AUTO, invoice=draft,
                         data={"error": str(error.message)})


class Rollback(Exception):
    pass


def outcome_of(finalize, *, since_event):
    """What `finalize` leaves in the database, then undone so the next one starts alike."""
    try:
        with transaction.atomic():
            finalize()
            state = database_state(since_event)
            raise Rollback
    except Rollback:
        return state


def database_state(since_event):
    invoices = {
        row.pop("id"): row
        for row in Invoice.objects.values().order_by("pk")
        if token_hash(token_from_salt(row.pop("hosted_token_salt"))) == row.pop("hosted_token_hash")
        or row["status"] == S.DRAFT
    }
    return {
        "invoices": invoices,
        "lines": list(InvoiceLine.objects.order_by("pk").values()),
        "events": list(
            Event.objects.filter(pk__gt=since_event)
            .order_by("invoice_id", "pk")
            .values("type", "invoice_id", "customer_id", "created_at", "actor_label", "data")
        ),
        "ledger": list(
            BalanceTransaction.objects.order_by("pk").values(
                "customer_id", "type", "amount", "ending_balance", "reference", "created_at"
            )
        ),
        "sequences": dict(InvoiceNumberSequence.objects.values_list("key", "next_number")),
    }


@pytest.mark.parametrize("at_scheduled_time", [False, True])
@pytest.mark.parametrize("kind", ["customer", "account"])
def test_bulk_and_one_row_finalization_give_the_same_invoices(kind, at_scheduled_time):
    # given varied drafts, and the account's numbering
    numbering(kind)
    drafts = varied_drafts()
    ids = [draft.pk for draft in drafts]
    mark = Event.objects.order_by("pk").last().pk

    # when they are finalized one by one, and (from the same start) in one batch
    one_by_one = outcome_of(
        lambda: finalize_one_by_one(drafts, now=LATER, at_scheduled_time=at_scheduled_time),
        since_event=mark,
    )
    bulk = outcome_of(
        lambda: invoices_finalize_bulk(
            ids, now=LATER, actor=AUTO, at_scheduled_time=at_scheduled_time
        ),
        since_event=mark,
    )

    # then the invoices, lines, events, ledger and sequences are the same, tokens valid
    assert len(bulk["invoices"]) == len(drafts)  # every finalized one has a valid token
    assert bulk == one_by_one
    # and they are what staff expect (not merely the same mistake twice)
    statuses = [bulk["invoices"][pk]["status"] for pk in ids]
    assert statuses == [S.OPEN] * 4 + [S.PAID] * 2 + [S.OPEN, S.DRAFT, S.DRAFT, S.OPEN, S.OPEN]
    types = [event["type"] for event in bulk["events"]]
    assert types.count("invoice.finalized") == 9 and types.count("invoice.paid") == 2
    assert types.count("invoice.finalization_failed") == 2
    credit_first, credit_second = (bulk["invoices"][pk] for pk in ids[5:7])
    assert (credit_first["amount_due"], credit_first["ending_balance"]) == (0, -3000)
    assert (credit_second["amount_due"], credit_second["ending_balance"]) == (7000, 0)


def finalize_queries(drafts) -> int:
    """The queries of finalizing `drafts` in one batch (all of them finalized)."""
    with CaptureQueriesContext(connection) as captured:
        result = invoices_finalize_bulk([d.pk for d in drafts], now=LATER, actor=AUTO)
    assert len(result.finalized) == len(drafts)
    return len(captured)


def test_a_batch_costs_the_same_queries_whatever_its_size():
    numbering("account")
    customers = [make_customer() for _ in range(3)]
    small = [make_draft(customers[n % 3]) for n in range(3)]
    large = [make_draft(customers[n % 3]) for n in range(30)]
    invoice_finalize(make_draft(customers[0]), now=NOW, actor=STAFF)  # the sequence exists

    assert finalize_queries(small) == finalize_queries(large)


def test_a_batch_costs_the_same_queries_whatever_its_number_of_sequences():
    # given customers numbered each on its own sequence, some of which exist already
    numbering("customer")
    small = [make_draft(make_customer(invoice_prefix=f"SMALL{n}")) for n in range(2)]
    large = [make_draft(make_customer(invoice_prefix=f"LARGE{n}")) for n in range(20)]
    for drafts in (small, large):
        invoice_finalize(make_draft(drafts[0].customer), now=NOW, actor=STAFF)

    # then a batch of 20 sequences costs what a batch of 2 does, and the numbers follow
    assert finalize_queries(small) == finalize_queries(large)
    numbers = dict(Invoice.objects.filter(pk__in=[d.pk for d in large])
                   .values_list("customer__invoice_prefix", "number"))
    assert numbers == {"LARGE0": "LARGE0-0002",
                       **{f"LARGE{n}": f"LARGE{n}-0001" for n in range(1, 20)}}


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's upsert")
def test_a_batchs_numbers_are_taken_in_one_statement_on_postgresql():
    # given sequences that exist and sequences that do not yet
    numbering("customer")
    old = make_customer(invoice_prefix="OLD")
    invoice_finalize(make_draft(old), now=NOW, actor=STAFF)  # OLD-0001
    wanted = {"C:OLD": ("OLD", 3), "C:NEW": ("NEW", 2)}

    with CaptureQueriesContext(connection) as captured:
        numbers = numbers_take_many(wanted)

    # then one round trip takes every block, where three did (create, lock, move)
    assert len(captured) == 1
    assert numbers == {"C:OLD": ["OLD-0002", "OLD-0003", "OLD-0004"],
                       "C:NEW": ["NEW-0001", "NEW-0002"]}
    assert numbers_take_many({"C:NEW": ("NEW", 1)}) == {"C:NEW": ["NEW-0003"]}
    assert dict(InvoiceNumberSequence.objects.values_list("key", "next_number")) == {
        "C:OLD": 5, "C:NEW": 4}


@pytest.mark.parametrize("kind", ["customer", "account"])
def test_sweep_numbers_are_gapless_and_follow_due_time(kind):
    # given drafts of three customers due over an hour, some of which will be refused
    numbering(kind)
    customers = [make_customer(invoice_prefix=f"GAP{n}") for n in range(3)]
    drafts = [
        make_draft(
            customers[n % 3], now=NOW + timedelta(minutes=60 - n),
            lines=() if n % 7 == 3 else ((1, 1000),),
        )
        for n in range(40)
    ]

    # when the sweep runs in small batches
    counts = finalize_due_drafts(now=NOW + 3 * HOUR, batch_size=6)

    # then numbers have no gap and follow due time, within each customer and overall
    failed = [d for n, d in enumerate(drafts) if n % 7 == 3]
    assert counts == {"finalized": 40 - len(failed), "failed": len(failed)}
    due = {d.pk: (d.automatically_finalizes_at, d.pk) for d in drafts}
    finalized = sorted(Invoice.objects.exclude(number=None), key=lambda i: due[i.pk])
    if kind == "account":
        assert [i.number for i in finalized] == [f"INV-{k:04d}" for k in range(1, 41 - len(failed))]
    for n, customer in enumerate(customers):
        numbers = [i.number for i in finalized if i.customer_id == customer.pk]
        if kind == "customer":
            assert numbers == [f"GAP{n}-{k:04d}" for k in range(1, len(numbers) + 1)]
        else:
            assert numbers == sorted(numbers)


def test_a_refused_draft_does_not_stop_its_batch_and_is_not_retried():
    customer = make_customer(invoice_prefix="MIX")
    first = make_draft(customer, now=NOW)
    refused = make_draft(customer, now=NOW + timedelta(minutes=1), lines=())
    last = make_draft(customer, now=NOW + timedelta(minutes=2))

    counts = finalize_due_drafts(now=LATER)
    again = finalize_due_drafts(now=LATER + HOUR)

    assert counts == {"finalized": 2, "failed": 1} and again == {"finalized": 0, "failed": 0}
    for draft in (first, refused, last):
        draft.refresh_from_db()
    assert (first.number, last.number) == ("MIX-0001", "MIX-0002")
    assert refused.status == S.DRAFT and refused.automatically_finalizes_at is None
    failure = Event.objects.get(invoice=refused, type="invoice.finalization_failed")
    assert "at least one line" in failure.data["error"] and failure.actor_label == AUTO.label


def test_drafts_no_longer_due_or_not_drafts_are_skipped():
    due = make_draft(now=NOW)
    edited = make_draft(now=NOW)
    invoice_finalize(edited, now=NOW, actor=STAFF)
    not_yet = invoice_create(customer=make_customer(), now=LATER, actor=STAFF)

    result = invoices_finalize_bulk(
        [due.pk, edited.pk, not_yet.pk], now=LATER, actor=AUTO, among=due_drafts(LATER)
    )

    assert (result.finalized, result.failed) == ([due.pk], {})
    assert Event.objects.filter(invoice=edited, type="invoice.finalized").count() == 1


# --- two sweeps at once, PostgreSQL only -----------------------------------------------

pg_only = [
    pytest.mark.postgres,
    pytest.mark.skipif(not ON_PG, reason="needs PostgreSQL (row locks, two real connections)"),
    pytest.mark.django_db(transaction=True),
]


def apply(marks):
    def decorate(function):
        for mark in reversed(marks):
            function = mark(function)
        return function

    return decorate


@apply(pg_only)
@pytest.mark.parametrize("kind", ["customer", "account"])
def test_two_sweeps_and_staff_at_once_finalize_each_draft_once_without_deadlock(kind):
    from .test_concurrency_pg import run_together

    # given 60 due drafts of six customers (one with credit), a few that will be refused
    numbering(kind)
    customers = [make_customer(invoice_prefix=f"RACE{n}") for n in range(6)]
    balance_transaction_create(
        customer=customers[0], amount=-5000, type="adjustment", now=NOW, actor=STAFF
    )
    drafts = [
        make_draft(customers[n % 6], now=NOW + timedelta(seconds=n),
                   lines=() if n % 13 == 5 else ((1, 1000),))
        for n in range(60)
    ]
    by_staff = drafts[30::3]

    # when two sweeps run together (small batches) while staff finalize some by hand
    def sweep():
        return finalize_due_drafts(now=LATER, batch_size=7)

    def staff():
        done = 0
        for draft in by_staff:
            try:
                invoice_finalize(Invoice.objects.get(pk=draft.pk), now=LATER, actor=STAFF)
                done += 1
            except DomainError:
                pass  # the sweep had it first, or it has no lines
        return {"finalized": done, "failed": 0}

    outcomes = run_together(sweep, sweep, staff)

    # then nobody failed or deadlocked, and each draft was finalized exactly once
    assert [kind_ for kind_, _value in outcomes] == ["ok"] * 3, outcomes
    refused = {d.pk for n, d in enumerate(drafts) if n % 13 == 5}
    assert sum(value["finalized"] for _kind, value in outcomes) == 60 - len(refused)
    finalized = Event.objects.filter(type="invoice.finalized").values_list("invoice", flat=True)
    assert sorted(finalized) == sorted(d.pk for d in drafts if d.pk not in refused)
    failures = Event.objects.filter(type="invoice.finalization_failed")
    assert sorted(failures.values_list("invoice", flat=True)) == sorted(refused)
    numbers = set(Invoice.objects.exclude(number=None).values_list("number", flat=True))
    if kind == "account":
        assert numbers == {f"INV-{k:04d}" for k in range(1, 61 - len(refused))}
    else:
        for n, customer in enumerate(customers):
            count = Invoice.objects.filter(customer=customer).exclude(number=None).count()
            mine = {number for number in numbers if number.startswith(f"RACE{n}-")}
            assert mine == {f"RACE{n}-{k:04d}" for k in range(1, count + 1)}


def test_drafts_made_in_bulk_are_those_made_one_by_one():
    from invoices.bulk import DraftLine, drafts_create_bulk

    customers = [make_customer(), make_customer(currency="USD")]
    specs = [[DraftLine("Subscription", 4200)],
             [DraftLine("Seats", 1999, quantity=3), DraftLine("Support", 5000)]]
    method = Invoice.CollectionMethod.CHARGE_AUTOMATICALLY
    by_one = []
    for customer, lines in zip(customers, specs, strict=True):
        invoice = invoice_create(customer=customer, now=NOW, actor=STAFF,
                                 collection_method=method)
        for line in lines:
            invoice_line_add(invoice, description=line.description, quantity=line.quantity,
                             unit_amount=line.unit_amount)
        by_one.append(invoice)

    with CaptureQueriesContext(connection) as queries:
        in_bulk = drafts_create_bulk(list(zip(customers, specs, strict=True)), now=NOW,
                                     actor=STAFF, collection_method=method)

    def row(invoice):
        fields = Invoice.objects.filter(pk=invoice.pk).values().get()
        lines = list(InvoiceLine.objects.filter(invoice=invoice).order_by("position")
                     .values("position", "description", "quantity", "unit_amount", "amount",
                             "discount_total", "amount_excluding_tax", "tax_amount"))
        events = list(Event.objects.filter(invoice=invoice).values_list("type", "created_at"))
        ignored = {"id", "hosted_token_salt", "hosted_token_hash"}
        return {k: v for k, v in fields.items() if k not in ignored}, lines, events

    assert [row(i) for i in in_bulk] == [row(i) for i in by_one]
    assert in_bulk[0].pk < in_bulk[1].pk
    assert len(queries) <= 6  # whatever the number of drafts


def test_drafts_in_bulk_refuse_a_bad_line_and_write_nothing():
    from invoices.bulk import DraftLine, drafts_create_bulk

    customer = make_customer()
    with pytest.raises(DomainError):
        drafts_create_bulk([(customer, [DraftLine("Fine", 100)]),
                            (customer, [DraftLine("Negative", -100)])],
                           now=NOW, actor=STAFF)
    assert not Invoice.objects.exists()


def test_a_finalized_batchs_reminders_are_scheduled_without_reading_its_invoices_again():
    # The event subscriber schedules reminders from the invoices as the events carry them
    # (finalized by the batch, with their customer), in the batch's transaction.
    customer = make_customer()
    drafts = [make_draft(customer, auto_advance=True) for _ in range(3)]
    with CaptureQueriesContext(connection) as captured:
        finalize_due_drafts(now=NOW + timedelta(hours=2))
    assert NotificationSchedule.objects.filter(invoice__in=drafts).count() == 3
    assert not [q for q in captured if q["sql"].startswith('SELECT "invoices_invoice"."id"')
                and '"customers_customer"."name"' in q["sql"]]


def test_a_batch_within_a_transaction_takes_no_savepoint():
    # A clock in a simulation finalizes within its transaction: the batch is written in
    # it, without a savepoint of its own (two round trips a batch); a refused draft
    # writes nothing but its reason.
    customer = make_customer()
    drafts = [make_draft(customer, auto_advance=True) for _ in range(2)]
    NotificationSettings.load()  # the settings row exists (its creation takes a savepoint)
    with transaction.atomic(), CaptureQueriesContext(connection) as captured:
        result = invoices_finalize_bulk([d.pk for d in drafts], now=LATER, actor=AUTO)
    assert len(result.finalized) == 2
    assert not [q for q in captured if "SAVEPOINT" in q["sql"]]


def test_a_sweep_within_a_transaction_claims_without_reading_first():
    # A clock in a simulation finalizes within its transaction: the claim is the read
    # (due order, a batch at a time, SKIP LOCKED), every due draft finalized once.
    customer = make_customer()
    drafts = [make_draft(customer, auto_advance=True) for _ in range(5)]
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = finalize_due_drafts(now=NOW + timedelta(hours=2), batch_size=2)
    assert counts == {"finalized": 5, "failed": 0}
    assert not [q for q in captured if q["sql"].startswith(
        'SELECT "invoices_invoice"."automatically_finalizes_at" AS')]
    claims = [q for q in captured if 'FOR UPDATE OF "invoices_invoice" SKIP LOCKED' in q["sql"]]
    assert len(claims) == 3  # 2, 2 and 1
    numbers = sorted(Invoice.objects.filter(pk__in=[d.pk for d in drafts])
                     .values_list("number", flat=True))
    assert len(set(numbers)) == 5
