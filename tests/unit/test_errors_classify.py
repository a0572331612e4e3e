"""``errors.classify`` for every family it handles, with real exception objects: the type
it decides (transient, data), the reason code, and which messages lose quoted values."""

from __future__ import annotations

import socket

import psycopg2
import psycopg2.errors
import pytest
from azure.core import exceptions as azure_errors

from sales_etl.core.errors import (
    ConfigError,
    DataError,
    EtlError,
    Skipped,
    TransientError,
    UnsafeName,
    classify,
)

SECRET = "CUST-SECRET-7"


def pg_error(sqlstate: str, message: str) -> psycopg2.Error:
    """A psycopg2 error as the server raises it: its class for the SQLSTATE, with ``pgcode``
    and ``pgerror`` set (as psycopg2 unpickles one: ``pgcode`` is read-only, and an error
    built from Python code alone has none, which classify reads as a lost connection)."""
    exc: psycopg2.Error = psycopg2.errors.lookup(sqlstate)(message)
    exc.__setstate__({"pgcode": sqlstate, "pgerror": message, "cursor": None})
    assert exc.pgcode == sqlstate
    return exc


class _Response:
    """The part of an HTTP response that azure-core's ``HttpResponseError`` reads."""

    def __init__(self, status: int) -> None:
        self.status_code, self.reason = status, "Reason"
        self.headers: dict[str, str] = {}
        self.content_type = None

    def text(self, encoding: str | None = None) -> str:
        return ""


def http_error(
    status: int,
    cls: type[azure_errors.HttpResponseError] = azure_errors.HttpResponseError,
    message: str = "the service said no",
) -> azure_errors.HttpResponseError:
    exc = cls(message=message, response=_Response(status))  # type: ignore[arg-type]
    assert exc.status_code == status
    return exc


def judged(exc: BaseException) -> tuple[type[EtlError], str]:
    error = classify(exc)
    return type(error), error.code


# ----------------------------------------------------------------------------- database


@pytest.mark.parametrize(
    ("sqlstate", "code"),
    [
        ("08000", "db_transient"),
        ("08006", "db_transient"),
        ("08001", "db_transient"),  # connection
        ("40001", "db_transient"),
        ("40P01", "db_transient"),  # serialization, deadlock
        ("53100", "db_transient"),
        ("53200", "db_transient"),  # disk full, out of memory
        ("57P01", "db_transient"),
        ("57P03", "db_transient"),
        ("57014", "db_transient"),  # shutdown..
        ("58030", "db_transient"),  # I/O error
        ("55P03", "db_transient"),
        ("55006", "db_transient"),
        ("25006", "db_transient"),
        ("53300", "too_many_connections"),
        ("23505", "db_conflict"),  # a concurrent load's race, retried (see errors.py)
        ("42P01", "db_error"),
        ("42703", "db_error"),
        ("42501", "db_error"),  # schema, permission
        ("42601", "db_error"),
        ("XX000", "db_error"),
    ],
)
def test_database_failures_that_may_pass_are_transient(sqlstate: str, code: str) -> None:
    error = classify(pg_error(sqlstate, f"ERROR:  something went wrong\nDETAIL:  {SECRET}"))
    assert (type(error), error.code) == (TransientError, code)
    assert sqlstate in error.message
    assert SECRET not in error.message  # the first line only


@pytest.mark.parametrize(
    "sqlstate", ["22P02", "22003", "22001", "22021", "22007", "22012", "23502", "23503", "23514"]
)
def test_database_data_errors_are_data_errors(sqlstate: str) -> None:
    error = classify(pg_error(sqlstate, f'ERROR:  invalid input syntax for type integer: "{SECRET}"'))
    assert (type(error), error.code) == (DataError, "db_data")
    assert error.message.startswith(f"database rejected the data ({sqlstate}): ERROR:  invalid")


@pytest.mark.parametrize("sqlstate", ["22P02", "22003", "22001"])
def test_data_exceptions_lose_the_value_they_quote(sqlstate: str) -> None:
    error = classify(pg_error(sqlstate, f'ERROR:  value too long for type: "{SECRET}"'))
    assert SECRET not in error.message and "(value not shown)" in error.message


def test_a_unique_violation_loses_the_value_it_quotes() -> None:
    error = classify(
        pg_error(
            "23505", f'ERROR:  duplicate key value violates unique constraint "sales_email_key" on "{SECRET}"'
        )
    )
    assert (type(error), error.code) == (TransientError, "db_conflict")
    assert SECRET not in error.message and "23505" in error.message


def test_schema_and_permission_errors_keep_their_names() -> None:
    """Not values: the table or column named is what an operator needs (and no row)."""
    error = classify(pg_error("42703", 'ERROR:  column "store_idx" does not exist'))
    assert '"store_idx"' in error.message
    error = classify(pg_error("42501", "ERROR:  permission denied for table sales"))
    assert "permission denied for table sales" in error.message


def test_a_data_error_quoting_the_connection_limit_text_is_still_a_data_error() -> None:
    """The connection-limit text is looked for only when there is no SQLSTATE: a row value
    must not turn a data error into a retried one (nor keep its value in the message)."""
    exc = pg_error(
        "22P02", 'ERROR:  invalid input syntax for type integer: "sorry, too many clients already"'
    )
    error = classify(exc)
    assert (type(error), error.code) == (DataError, "db_data")
    assert "too many clients" not in error.message


def test_the_sqlstate_is_read_from_a_wrapped_error_too() -> None:
    class Wrapped(Exception):  # e.g. SQLAlchemy's DBAPIError: the driver's error as .orig
        def __init__(self, orig: BaseException) -> None:
            super().__init__(str(orig))
            self.orig = orig

    assert judged(Wrapped(pg_error("40001", "ERROR:  could not serialize"))) == (
        TransientError,
        "db_transient",
    )
    assert judged(Wrapped(pg_error("22P02", "ERROR:  bad"))) == (DataError, "db_data")


@pytest.mark.parametrize(
    "exc",
    [
        psycopg2.OperationalError(
            'connection to server at "db" (10.0.0.1), port 5432 failed: Connection refused'
        ),
        psycopg2.OperationalError("server closed the connection unexpectedly"),
        psycopg2.InterfaceError("connection already closed"),
        psycopg2.DatabaseError("SSL SYSCALL error: EOF detected"),
    ],
)
def test_driver_errors_without_sqlstate_are_a_lost_connection(exc: psycopg2.Error) -> None:
    assert exc.pgcode is None
    error = classify(exc)
    assert (type(error), error.code) == (TransientError, "db_unreachable")
    assert error.message == f"database unreachable: {exc}"


def test_database_messages_never_keep_a_password() -> None:
    error = classify(
        psycopg2.OperationalError(
            "could not connect to postgresql://loader:hunter2@db:5432/sales password=hunter2"
        )
    )
    assert error.code == "db_unreachable" and "hunter2" not in error.message


# ----------------------------------------------------------------------------- storage


@pytest.mark.parametrize("status", [404, 409, 412])
def test_a_blob_that_moved_or_changed_is_blob_changed(status: int) -> None:
    assert judged(http_error(status)) == (TransientError, "blob_changed")


@pytest.mark.parametrize(
    ("cls", "status"),
    [
        (azure_errors.ResourceNotFoundError, 404),
        (azure_errors.ResourceModifiedError, 412),
        (azure_errors.ResourceExistsError, 409),
    ],
)
def test_the_sdks_own_not_found_modified_exists_are_blob_changed(
    cls: type[azure_errors.HttpResponseError], status: int
) -> None:
    assert judged(http_error(status, cls)) == (TransientError, "blob_changed")


def test_not_found_and_modified_are_known_by_their_type_without_a_response() -> None:
    assert judged(azure_errors.ResourceNotFoundError("gone")) == (TransientError, "blob_changed")
    assert judged(azure_errors.ResourceModifiedError("changed")) == (TransientError, "blob_changed")


@pytest.mark.parametrize("status", [400, 401, 403, 408, 429, 500, 502, 503, 504])
def test_other_http_statuses_are_storage_transient(status: int) -> None:
    error = classify(http_error(status))
    assert (type(error), error.code) == (TransientError, "storage_transient")
    assert error.message == "storage unavailable: the service said no"


@pytest.mark.parametrize(
    "exc",
    [
        azure_errors.ServiceRequestError("Connection refused"),
        azure_errors.ServiceRequestTimeoutError("connect timed out"),
        azure_errors.ServiceResponseError("connection reset while reading"),
        azure_errors.ServiceResponseTimeoutError("read timed out"),
        azure_errors.ClientAuthenticationError("token expired"),
        azure_errors.IncompleteReadError("incomplete body"),
        azure_errors.AzureError("anything else from the SDK"),
    ],
)
def test_connection_and_timeout_errors_of_the_sdk_are_storage_transient(exc: azure_errors.AzureError) -> None:
    assert judged(exc) == (TransientError, "storage_transient")


def test_storage_messages_never_keep_a_sas_signature() -> None:
    error = classify(
        azure_errors.ServiceRequestError(
            "Max retries exceeded with url: /c/b?sv=2024&sig=AbC%2Fsecret%3D&se=2"
        )
    )
    assert "AbC" not in error.message and "sig=***" in error.message


# ----------------------------------------------------------------------------- OS, network


@pytest.mark.parametrize(
    "exc",
    [
        ConnectionRefusedError(111, "Connection refused"),
        ConnectionResetError(104, "reset"),
        BrokenPipeError(32, "Broken pipe"),
        TimeoutError("timed out"),
        TimeoutError(110, "Connection timed out"),
        socket.gaierror(-3, "Temporary failure in name resolution"),
        OSError(5, "I/O error"),
    ],
)
def test_os_and_network_errors_are_io_transient(exc: OSError) -> None:
    error = classify(exc)
    assert (type(error), error.code) == (TransientError, "io_transient")
    assert error.message == f"I/O failure: {exc}"


# ----------------------------------------------------------------------------- ours, unknown


@pytest.mark.parametrize(
    "exc",
    [
        DataError("bad header", code="missing_columns"),
        TransientError("later", code="in_progress"),
        ConfigError("no key", code="settings"),
        Skipped("not mine", code="gone"),
        UnsafeName("incoming/../x"),
    ],
)
def test_our_own_errors_pass_through_unchanged(exc: EtlError) -> None:
    assert classify(exc) is exc


@pytest.mark.parametrize(
    "exc",
    [
        ValueError(f"invalid literal for int() with base 10: '{SECRET}'"),
        KeyError(SECRET),
        UnicodeDecodeError("utf-8", b"\xff" + SECRET.encode(), 0, 1, "invalid start byte"),
        RuntimeError(f'boom "{SECRET}"'),
    ],
)
def test_unknown_errors_are_transient_unexpected_without_values(exc: Exception) -> None:
    error = classify(exc)
    assert (type(error), error.code) == (TransientError, "unexpected")
    assert error.message.startswith(f"unexpected {type(exc).__name__}: ")
    assert SECRET not in error.message


def test_an_unknown_error_without_text_is_named_by_its_type() -> None:
    assert classify(RuntimeError()).message == "unexpected RuntimeError: RuntimeError"


def test_interrupts_are_classified_too() -> None:
    """classify accepts any BaseException (the pipeline types interrupts itself)."""
    error = classify(KeyboardInterrupt())
    assert (type(error), error.code) == (TransientError, "unexpected")
