"""Migrations that build indexes on the invoices' large tables do not block writes on
PostgreSQL (CREATE / DROP INDEX CONCURRENTLY), and still run on SQLite, the embedded
default, where CONCURRENTLY does not exist."""

import pytest
from django.db import connection, connections
from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteWrapper
from django.db.migrations.loader import MigrationLoader

DASHBOARD_INDEXES = ("invoices", "0017_dashboard_indexes")


def migration_sql(db, key, *, backwards=False) -> list[str]:
    """The statements `sqlmigrate` prints for one migration on this connection."""
    loader = MigrationLoader(db, replace_migrations=False)
    plan = [(loader.graph.nodes[key], backwards)]
    return [
        statement for statement in loader.collect_sql(plan)
        if statement.strip() and not statement.startswith("--")
    ]


@pytest.mark.django_db
@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's CONCURRENTLY")
@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "backwards"])
def test_the_dashboard_indexes_are_built_and_dropped_concurrently(backwards):
    outside_the_tests_transaction = connection.copy()  # as `migrate` runs: no transaction
    try:
        statements = migration_sql(
            outside_the_tests_transaction, DASHBOARD_INDEXES, backwards=backwards
        )
    finally:
        outside_the_tests_transaction.close()

    assert statements
    for statement in statements:
        assert "INDEX CONCURRENTLY" in statement or statement.startswith("ALTER INDEX"), (
            statement
        )


@pytest.mark.parametrize("backwards", [False, True], ids=["forwards", "backwards"])
def test_the_dashboard_indexes_migration_runs_plainly_on_sqlite(backwards):
    sqlite = SQLiteWrapper({
        **connection.settings_dict, "ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:",
        "OPTIONS": {}, "TEST": {},
    }, alias="sqlite-check")
    connections["sqlite-check"] = sqlite
    try:
        statements = migration_sql(sqlite, DASHBOARD_INDEXES, backwards=backwards)
    finally:
        sqlite.close()
        del connections["sqlite-check"]

    assert any("CREATE INDEX" in statement for statement in statements)
    assert not any("CONCURRENTLY" in statement for statement in statements)
