"""The health check of persistent PostgreSQL connections (billing_site/postgresql): no
round trip for a connection that is idle and quiet, Django's `SELECT 1` as soon as the
server has said anything, and a connection the server ended is found dead and replaced
before a request uses it."""

import time
from unittest import mock

import psycopg
import pytest
from django.db import connection
from django.db.backends.postgresql import base as django_postgresql

from tests.test_concurrency_pg import POSTGRES_CONNECTIONS

pytestmark = POSTGRES_CONNECTIONS


def server_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def terminate(pid: int) -> None:
    """End the session `pid` from another connection, as an administrator or a restart
    would, and wait until its socket has the server's farewell to read."""
    config = connection.get_connection_params()
    with psycopg.connect(**config, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s, 5000)", [pid])
    time.sleep(0.05)


def test_an_idle_connection_is_usable_without_a_round_trip():
    # Given a persistent connection that served a query and is idle
    server_pid()
    # When its health is checked
    with mock.patch.object(django_postgresql.DatabaseWrapper, "is_usable") as select_one:
        usable = connection.is_usable()
    # Then it is usable, and Django's SELECT 1 was not sent
    assert usable is True
    select_one.assert_not_called()


def test_a_connection_inside_a_transaction_gets_the_full_check():
    server_pid()
    with mock.patch.object(django_postgresql.DatabaseWrapper, "is_usable",
                           return_value=True) as select_one:
        with connection.cursor() as cursor:
            cursor.execute("BEGIN")
            try:
                assert connection.is_usable() is True
            finally:
                cursor.execute("ROLLBACK")
    select_one.assert_called_once()


def test_a_connection_the_server_ended_is_replaced_before_the_next_request_uses_it():
    # Given a persistent connection whose session the server ended between two requests
    before = server_pid()
    terminate(before)
    # When the next request starts and checks it (as Django does before its first query)
    assert connection.is_usable() is False
    connection.health_check_done = False
    connection.close_if_health_check_failed()
    # Then the request's query runs on a new session instead of failing
    after = server_pid()
    assert after != before


def test_without_the_check_the_dead_connection_would_have_failed_the_request():
    # The control: the same ended session, used without a health check, fails the query,
    # so the test above proves the check, not a connection that survived.
    before = server_pid()
    terminate(before)
    with pytest.raises(Exception):  # noqa: B017 - OperationalError or InterfaceError
        server_pid()
    connection.close()
    assert server_pid() != before
