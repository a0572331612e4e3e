"""A refused connection at the server's or PgBouncer's limit is transient, with a reason
code of its own; other connection failures keep theirs."""

from __future__ import annotations

import psycopg2
import pytest

from sales_etl.core.errors import TransientError, classify


@pytest.mark.parametrize(
    "text",
    [
        'connection to server at "db", port 5432 failed: FATAL:  sorry, too many clients already',
        'connection to server at "db", port 5432 failed: FATAL:  remaining connection slots are '
        "reserved for non-replication superuser connections",
        'connection to server at "db", port 5432 failed: FATAL:  remaining connection slots are '
        "reserved for roles with the SUPERUSER attribute",
        'FATAL:  too many connections for role "sales_loader"',
        'connection to server at "db", port 6432 failed: FATAL:  no more connections allowed '
        "(max_client_conn)",
    ],
)
def test_connection_limit_is_transient_too_many_connections(text: str) -> None:
    error = classify(psycopg2.OperationalError(text))
    assert isinstance(error, TransientError)
    assert error.code == "too_many_connections"
    assert "53300" in error.message and text.splitlines()[0][:40] in error.message


def test_other_connection_failures_are_not_mistaken_for_the_limit() -> None:
    refused = classify(
        psycopg2.OperationalError('connection to server at "db", port 5432 failed: Connection refused')
    )
    assert (type(refused), refused.code) == (TransientError, "db_unreachable")
    # a data row that happens to contain the words is not a connection failure
    assert classify(ValueError("too many clients already")).code == "unexpected"


def test_a_unique_violation_that_escapes_the_merge_is_a_race_retried_without_its_value() -> None:
    class UniqueViolation(Exception):  # psycopg2's class, as far as classify reads it
        pgcode = "23505"

    error = classify(
        UniqueViolation(
            "duplicate key value violates unique constraint "
            '"customers_email_key"\nDETAIL:  Key (email)=(ann@x.org) '
            "already exists."
        )
    )
    assert (type(error), error.code) == (TransientError, "db_conflict")
    assert "ann@x.org" not in error.message and "23505" in error.message
