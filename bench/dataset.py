"""The benchmark data set: ~5,000 customers and 1,000,000 invoices, built in SQL.

Rows are generated inside PostgreSQL (INSERT ... SELECT over generate_series), so the
build takes a minute or two instead of hours through the ORM. The shape is realistic
enough for the list pages: more invoices recently than three years ago, a few large
customers and many small ones, statuses by age (recent drafts and open invoices, old
ones mostly paid), six currencies with their real exponents (JPY 0, KWD 3), per-customer
gapless numbers. Invoices carry no lines or events: the changelist does not read them.

The data set is built once per database and reused; `--rebuild` starts from scratch.
"""

import time

from django.db import connection, transaction

DATASET_VERSION = 1
CUSTOMERS = 5_000
INVOICES = 1_000_000
PREFIX = "B"  # bench customers are B00001..B05000

SESSION_SETTINGS = [
    "SET synchronous_commit = off",
    "SET work_mem = '256MB'",
    "SET maintenance_work_mem = '512MB'",
]

CUSTOMERS_SQL = f"""
INSERT INTO customers_customer (
    name, email, address_line1, address_line2, postal_code, city, state, country,
    tax_ids, currency, preferred_locale, timezone, segment, metadata, invoice_prefix,
    balance, created_at, test_clock_id
)
SELECT
    (ARRAY['Acme','Globex','Initech','Umbrella','Stark','Wayne','Hooli','Vandelay',
           'Soylent','Tyrell','Cyberdyne','Wonka','Gringotts','Oscorp','Massive'])[1 + i % 15]
        || ' ' || (ARRAY['Labs','Industries','Consulting','Foods','Logistics','Media',
                         'Systems','Partners','Retail','Energy'])[1 + (i / 15) % 10]
        || ' ' || i,
    'billing' || i || '@example.com',
    i || ' Main Street', '', lpad((i % 99999)::text, 5, '0'),
    (ARRAY['Paris','Berlin','London','New York','Chicago','Sao Paulo','Tokyo','Kuwait City'])
        [1 + i % 8],
    '',
    (ARRAY['FR','DE','GB','US','US','BR','JP','KW'])[1 + i % 8],
    '[]'::jsonb,
    (ARRAY['EUR','EUR','GBP','USD','USD','BRL','JPY','KWD'])[1 + i % 8],
    (ARRAY['fr','en','en','en','en','pt-BR','en','en'])[1 + i % 8],
    (ARRAY['Europe/Paris','Europe/Berlin','Europe/London','America/New_York',
           'America/Chicago','America/Sao_Paulo','Asia/Tokyo','Asia/Kuwait'])[1 + i % 8],
    (ARRAY['enterprise','smb','smb','startup','startup','public','nonprofit'])[1 + (i / 8) % 7],
    jsonb_build_object('plan', (ARRAY['free','pro','business'])[1 + i % 3]),
    '{PREFIX}' || lpad(i::text, 5, '0'),
    0,
    now() - interval '1200 days' * random(),
    NULL
FROM generate_series(1, {CUSTOMERS}) AS i
"""

# Status depends on age: drafts only in the last two days, old invoices mostly settled.
# Customers are skewed (power law on the rank): a few have thousands of invoices.
INVOICES_SQL = f"""
WITH base AS (
    SELECT
        i,
        1 + floor({CUSTOMERS} * power(random(), 1.8))::int AS customer_rank,
        now() - interval '1095 days' * (1 - sqrt(i::float / {INVOICES}))
            - interval '1 hour' * random() AS created_at,
        random() AS r_status, random() AS r_method, random() AS r_amount,
        random() AS r_paid, random() AS r_tax, random() AS r_days
    FROM generate_series(1, {INVOICES}) AS i
),
shaped AS (
    SELECT
        b.*, c.id AS customer_id, c.invoice_prefix, c.currency, c.name, c.email,
        c.preferred_locale, c.timezone, c.city, c.country, c.address_line1,
        CASE c.currency WHEN 'JPY' THEN 1 WHEN 'KWD' THEN 1000 ELSE 100 END AS minor,
        CASE
            WHEN now() - b.created_at < interval '2 days' THEN
                CASE WHEN b.r_status < 0.3 THEN 'draft' ELSE 'open' END
            WHEN now() - b.created_at < interval '45 days' THEN
                CASE WHEN b.r_status < 0.45 THEN 'open' WHEN b.r_status < 0.93 THEN 'paid'
                     WHEN b.r_status < 0.97 THEN 'uncollectible' ELSE 'void' END
            ELSE
                CASE WHEN b.r_status < 0.03 THEN 'open' WHEN b.r_status < 0.88 THEN 'paid'
                     WHEN b.r_status < 0.94 THEN 'uncollectible' ELSE 'void' END
        END AS status,
        CASE WHEN b.r_method < 0.65 THEN 'charge_automatically' ELSE 'send_invoice' END
            AS collection_method
    FROM base b
    JOIN customers_customer c
        ON c.invoice_prefix = '{PREFIX}' || lpad(b.customer_rank::text, 5, '0')
),
priced AS (
    SELECT
        s.*,
        (round(exp(ln(10) + s.r_amount * ln(2000))) * s.minor)::bigint AS subtotal,
        CASE WHEN s.r_tax < 0.7 THEN 20 WHEN s.r_tax < 0.9 THEN 10 ELSE 0 END AS tax_percent,
        CASE WHEN s.status <> 'draft' THEN row_number() OVER (
            PARTITION BY s.customer_id, s.status <> 'draft' ORDER BY s.created_at, s.i
        ) END AS seq
    FROM shaped s
),
totalled AS (
    SELECT p.*, round(p.subtotal * p.tax_percent / 100.0)::bigint AS tax_amount FROM priced p
),
settled AS (
    SELECT
        t.*, t.subtotal + t.tax_amount AS total,
        CASE
            WHEN t.status = 'paid' THEN t.subtotal + t.tax_amount
            WHEN t.status = 'open' AND t.r_paid < 0.15 THEN (t.subtotal + t.tax_amount) / 2
            ELSE 0
        END AS amount_paid,
        t.created_at + interval '1 hour' AS finalized_at
    FROM totalled t
)
INSERT INTO invoices_invoice (
    status, number, currency, collection_method, due_date, days_until_due, auto_advance,
    automatically_finalizes_at, description, footer, metadata, discount_percent,
    discount_amount, subtotal, total_discount_amount, total_excluding_tax, tax, total,
    tax_breakdown, starting_balance, ending_balance, pre_payment_credit_notes_amount,
    post_payment_credit_notes_amount, amount_due, amount_paid, amount_remaining,
    attempt_count, next_payment_attempt, last_payment_error, last_decline_code,
    next_payment_attempt_reason, payment_hold, past_due_at, customer_details,
    hosted_token_salt, hosted_token_hash, created_at, finalized_at, paid_at, voided_at,
    marked_uncollectible_at, customer_id, from_invoice_id
)
SELECT
    x.status,
    CASE WHEN x.seq IS NULL THEN NULL
         WHEN x.seq < 10000 THEN x.invoice_prefix || '-' || lpad(x.seq::text, 4, '0')
         ELSE x.invoice_prefix || '-' || x.seq END,
    x.currency, x.collection_method,
    CASE WHEN x.collection_method = 'send_invoice' AND x.status <> 'draft'
         THEN (x.finalized_at + interval '30 days')::date END,
    NULL,
    x.status IN ('draft', 'open'),
    CASE WHEN x.status = 'draft' THEN x.created_at + interval '1 hour' END,
    '', '', '{{}}'::jsonb, 0, 0,
    x.subtotal, 0, x.subtotal, x.tax_amount, x.total,
    CASE WHEN x.tax_percent = 0 THEN '[]'::jsonb ELSE jsonb_build_array(jsonb_build_object(
        'tax_rate', 1, 'display_name', 'VAT', 'percentage', x.tax_percent::text,
        'inclusive', false, 'category', 'S', 'taxable_amount', x.subtotal,
        'amount', x.tax_amount)) END,
    0, CASE WHEN x.status <> 'draft' THEN 0 END, 0, 0,
    x.total, x.amount_paid, CASE WHEN x.status = 'paid' THEN 0 ELSE x.total - x.amount_paid END,
    CASE WHEN x.collection_method = 'charge_automatically' AND x.status <> 'draft'
         THEN 1 + (x.r_paid * 3)::int ELSE 0 END,
    CASE WHEN x.status = 'open' AND x.collection_method = 'charge_automatically'
              AND x.r_paid > 0.7 THEN now() + interval '1 day' * x.r_days END,
    CASE WHEN x.status IN ('open', 'uncollectible') AND x.collection_method = 'charge_automatically'
              AND x.r_paid > 0.7 THEN 'Your card was declined.' ELSE '' END,
    '', '', '',
    -- past_due_at as migration invoices 0005 backfills it: the end of the due date in the
    -- customer's time zone, else the first failed payment (taken as the finalization).
    CASE WHEN x.status <> 'open' THEN NULL
         WHEN x.collection_method = 'send_invoice'
              THEN ((x.finalized_at + interval '30 days')::date + 1)::timestamp
                   AT TIME ZONE x.timezone
         WHEN x.r_paid > 0.7 THEN x.finalized_at END,
    CASE WHEN x.status = 'draft' THEN '{{}}'::jsonb ELSE jsonb_build_object(
        'name', x.name, 'email', x.email, 'locale', x.preferred_locale, 'timezone', x.timezone,
        'tax_ids', '[]'::jsonb, 'address', jsonb_build_object(
            'line1', x.address_line1, 'city', x.city, 'country', x.country)) END,
    CASE WHEN x.status = 'draft' THEN '' ELSE md5(x.i::text) END,
    CASE WHEN x.status = 'draft' THEN '' ELSE md5('h' || x.i) || md5('k' || x.i) END,
    x.created_at,
    CASE WHEN x.status <> 'draft' THEN x.finalized_at END,
    CASE WHEN x.status = 'paid' THEN x.finalized_at + interval '20 days' * x.r_days END,
    CASE WHEN x.status = 'void' THEN x.finalized_at + interval '10 days' * x.r_days END,
    CASE WHEN x.status = 'uncollectible' THEN x.finalized_at + interval '60 days' END,
    x.customer_id, NULL
FROM settled x
ORDER BY x.created_at
"""

AFTER_SQL = [
    f"""INSERT INTO customers_invoiceprefix (prefix, customer_id, reserved_at)
        SELECT invoice_prefix, id, created_at FROM customers_customer
        WHERE invoice_prefix LIKE '{PREFIX}%' ON CONFLICT DO NOTHING""",
    """INSERT INTO invoices_invoicenumbersequence (key, next_number)
        SELECT 'C:' || c.invoice_prefix, count(i.id) + 1
        FROM customers_customer c JOIN invoices_invoice i ON i.customer_id = c.id
        WHERE i.status <> 'draft' GROUP BY c.invoice_prefix
        ON CONFLICT (key) DO UPDATE SET next_number = EXCLUDED.next_number""",
]

MARKER_SQL = """CREATE TABLE IF NOT EXISTS bench_dataset (
    version integer NOT NULL, invoices integer NOT NULL, built_at timestamptz NOT NULL)"""


def dataset_built() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(MARKER_SQL)
        cursor.execute("SELECT 1 FROM bench_dataset WHERE version = %s", [DATASET_VERSION])
        return cursor.fetchone() is not None


def dataset_build(say=print) -> None:
    """Fill an empty, migrated database. The caller makes sure it is empty."""
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:  # all or nothing
        for statement in SESSION_SETTINGS:
            cursor.execute(statement)
        cursor.execute("SELECT setseed(0.42)")
        steps = [("customers", CUSTOMERS_SQL), ("invoices", INVOICES_SQL)]
        steps += [("sequences and prefixes", sql) for sql in AFTER_SQL]
        for label, sql in steps:
            step_started = time.perf_counter()
            cursor.execute(sql)
            say(f"  {label}: {time.perf_counter() - step_started:.1f}s")
        cursor.execute(MARKER_SQL)
        cursor.execute(
            "INSERT INTO bench_dataset VALUES (%s, (SELECT count(*) FROM invoices_invoice), now())",
            [DATASET_VERSION],
        )
    with connection.cursor() as cursor:
        # What autovacuum does in production: statistics, and the visibility map that
        # lets index-only scans (the capped counts) skip the heap. Not in a transaction.
        cursor.execute("VACUUM ANALYZE")
    say(f"  built in {time.perf_counter() - started:.0f}s (with VACUUM ANALYZE)")


def has_data() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM customers_customer)")
        return cursor.fetchone()[0]


def dataset_summary() -> str:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT status, count(*) FROM invoices_invoice GROUP BY status ORDER BY 2 DESC"
        )
        by_status = ", ".join(f"{status} {count:,}" for status, count in cursor.fetchall())
        cursor.execute("SELECT count(*) FROM customers_customer")
        customers = cursor.fetchone()[0]
    return f"{customers:,} customers; invoices: {by_status}"
