"""Typed errors, and the one place that classifies database and storage failures.

What happens to a file is decided by the type of the error raised while processing it:

* ``DataError``: the file (or the dataset definition) is wrong; retrying the same bytes with
  the same code cannot succeed. The file goes to ``failed/`` with the reason and is retried
  only when the dataset definition or the app changed, or when an operator forces it.
* ``TransientError``: the database or storage was unreachable, a serialization failure or a
  timeout happened; the same attempt may succeed later, so the sweep retries with backoff.
* ``ConfigError``: a setting or a dataset file is missing or malformed; the app refuses to
  start (or the command refuses to run) with a message naming the setting.
"""

from __future__ import annotations

import socket
from typing import Final

from sales_etl.core import redact
from sales_etl.core.reasons import Code


class EtlError(Exception):
    """Base of every error this package raises on purpose."""

    kind: str = "error"

    def __init__(self, message: str, *, code: Code = "error") -> None:
        # The one place error text is made safe: whatever a module wrote into it (a
        # parser's message quoting a row, a URL with a SAS), the ledger, the blob metadata,
        # the logs and the command line get it scrubbed (see redact.py).
        super().__init__(redact.scrub(message))
        self.code: Code = code  # registered in reasons.py (mypy checks each literal)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigError(EtlError):
    """A setting or a dataset definition is missing or malformed."""

    kind = "config"


class DataError(EtlError):
    """The file cannot be loaded as it is: permanent, retried only if code or dataset change."""

    kind = "data"


class TransientError(EtlError):
    """A failure that may go away by itself: retried with exponential backoff."""

    kind = "transient"


class UnsafeName(DataError):
    """A blob name that is not confined to its folder (``.``/``..`` segments, also
    percent-encoded, control characters): refused before any storage call."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="unsafe_name")


class Skipped(EtlError):
    """Not this invocation's file to process: another one holds its lock, or already
    processed and moved it. Recorded in the ledger as ``skipped`` with the reason."""

    kind = "skipped"


# PostgreSQL SQLSTATE classes and codes whose failures are worth retrying.
# https://www.postgresql.org/docs/current/errcodes-appendix.html
_TRANSIENT_SQLSTATE_CLASSES: Final = {
    "08",  # connection exception
    "40",  # transaction rollback: serialization failure, deadlock
    "53",  # insufficient resources (disk full, out of memory, too many connections)
    "57",  # operator intervention: admin shutdown, crash shutdown, cannot connect now
    "58",  # system error (I/O error)
}
_TRANSIENT_SQLSTATES: Final = {"55P03", "55006", "25006"}  # lock not available, object in use
_DATA_SQLSTATE_CLASSES: Final = {"22", "23"}  # data exception, integrity constraint violation


def classify(exc: BaseException) -> EtlError:
    """Map any exception raised while processing a file to a typed error.

    Already-typed errors pass through. Unknown errors are treated as data errors only when
    they are clearly about the data; anything else is transient (safer: it is retried a
    bounded number of times and then dead-lettered, never silently dropped). By family
    (tests/unit/test_errors_classify.py holds one case of each):

    * the database's SQLSTATE (``pgcode``, also on a wrapper's ``orig``): 53300, or a
      refusal without SQLSTATE whose text says so, ``too_many_connections``; 23505
      ``db_conflict`` (transient: a race, see below); classes 08, 40, 53, 57, 58 and
      55P03/55006/25006 ``db_transient``; classes 22 and 23 ``DataError`` ``db_data``;
      any other SQLSTATE (undefined table or column, permission) ``db_error``, transient;
    * a driver error without SQLSTATE: ``db_unreachable``;
    * Azure SDK errors: not found, modified, 404/409/412 ``blob_changed``; any other
      (HTTP status, connection, timeout) ``storage_transient``;
    * OS and network errors: ``io_transient``; anything else ``unexpected``, transient.

    Messages quoting values (data exceptions, 23505, unknown errors) lose the values.
    """
    if isinstance(exc, EtlError):
        return exc
    name = type(exc).__name__
    sqlstate = getattr(exc, "pgcode", None) or getattr(getattr(exc, "orig", None), "pgcode", None)
    # (the text only when there is no SQLSTATE: a data error may quote a row saying it)
    if sqlstate == TOO_MANY_CONNECTIONS or (not sqlstate and _too_many_connections(exc)):
        # The server (or a pooler) is at its connection limit: a burst of invocations.
        # Retried with backoff like any transient failure; docs/scale-out.md sizes it.
        return TransientError(
            f"database connection limit reached (53300): {_first_line(exc)}", code="too_many_connections"
        )
    if isinstance(sqlstate, str) and len(sqlstate) == 5:
        detail = _first_line(exc)
        if sqlstate[:2] == "22":  # data exceptions quote the offending value
            detail = redact.values(detail)
        if sqlstate == UNIQUE_VIOLATION:
            # Every unique index is checked against the staged rows before the merge, and the
            # merge re-checks and retries under a savepoint when another file commits the
            # same value meanwhile (db/merge.py); one that still escapes is that race, not bad
            # data: the file is retried, and the check then rejects that row alone.
            return TransientError(
                f"a concurrent load stored the same unique value ({sqlstate}): {redact.values(detail)}",
                code="db_conflict",
            )
        if sqlstate[:2] in _TRANSIENT_SQLSTATE_CLASSES or sqlstate in _TRANSIENT_SQLSTATES:
            return TransientError(f"database unavailable ({sqlstate}): {detail}", code="db_transient")
        if sqlstate[:2] in _DATA_SQLSTATE_CLASSES:
            return DataError(f"database rejected the data ({sqlstate}): {detail}", code="db_data")
        return TransientError(f"database error ({sqlstate}): {detail}", code="db_error")
    module = type(exc).__module__ or ""
    if module.startswith(("psycopg2", "sqlalchemy")):
        # OperationalError / InterfaceError without SQLSTATE: the connection is gone.
        return TransientError(f"database unreachable: {_first_line(exc)}", code="db_unreachable")
    if module.startswith("azure"):
        status = getattr(exc, "status_code", None)
        if name in {"ResourceNotFoundError", "ResourceModifiedError"} or status in {404, 409, 412}:
            # The blob moved or changed under us: another invocation or a new upload.
            return TransientError(f"blob changed or vanished: {_first_line(exc)}", code="blob_changed")
        return TransientError(f"storage unavailable: {_first_line(exc)}", code="storage_transient")
    if isinstance(exc, (ConnectionError, TimeoutError, socket.timeout, OSError)):
        return TransientError(f"I/O failure: {_first_line(exc)}", code="io_transient")
    # An unknown error may quote a value from the row being processed: values dropped.
    return TransientError(f"unexpected {name}: {redact.values(_first_line(exc))}", code="unexpected")


TOO_MANY_CONNECTIONS: Final = "53300"
UNIQUE_VIOLATION: Final = "23505"
# libpq reports a refused connection without its SQLSTATE (psycopg2 leaves pgcode unset),
# so the server's and PgBouncer's messages for 53300 are recognised by their text.
_TOO_MANY_CONNECTIONS_TEXT: Final = (
    "too many clients already",  # max_connections
    "remaining connection slots are reserved",  # only superuser_reserved_connections left
    "too many connections for",  # a role's or database's CONNECTION LIMIT
    "no more connections allowed",  # PgBouncer's max_client_conn
)


def _too_many_connections(exc: BaseException) -> bool:
    module = type(exc).__module__ or ""
    if not module.startswith(("psycopg2", "sqlalchemy")):
        return False
    text = str(exc).lower()
    return any(marker in text for marker in _TOO_MANY_CONNECTIONS_TEXT)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:500] if text else type(exc).__name__
