"""The ledger (``etl_runs``): one row per file attempt, the source of truth.

A loading attempt inserts its row inside the file's transaction, so the data and its
ledger row commit together or not at all. Attempts that end without loading (skipped,
failed) are recorded in a short transaction of their own.

Each run has two names: ``run_id``, the ledger's bigint (``etl_runs.run_id``, what
``sales.etl_run_id`` and ``duplicate_of`` point at, what ``sales-etl runs`` shows), and
``run_uuid`` (``etl_runs.run_uuid``), chosen before the run touches the database: the name
in log lines, telemetry, blob metadata and rejects file names.

``claim_file`` is the first step of a file's transaction: the file's lock, then the
re-checks of what an earlier holder left.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from psycopg2.extras import Json, RealDictCursor

from sales_etl import __version__
from sales_etl.core.errors import Skipped
from sales_etl.core.reasons import Code, Moved


@dataclass
class RunRecord:
    dataset: str
    blob_path: str
    trigger: str
    etag: str | None = None
    attempt: int = 1
    dataset_version: str | None = None
    run_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))
    app_version: str = __version__
    status: str = "running"
    reason_code: Code | None = None  # registered (reasons.py): never built at run time
    error: str | None = None
    content_sha256: str | None = None
    rows_read: int = 0
    rows_loaded: int = 0
    rows_duplicate: int = 0
    rows_rejected: int = 0
    bytes_read: int = 0
    rejects_path: str | None = None
    unknown_columns: list[str] | None = None
    duplicate_of: int | None = None
    seconds: float | None = None
    stage_seconds: dict[str, float] | None = None
    run_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


_COLUMNS = (
    "run_uuid",
    "dataset",
    "blob_path",
    "etag",
    "attempt",
    "trigger",
    "status",
    "reason_code",
    "error",
    "content_sha256",
    "rows_read",
    "rows_loaded",
    "rows_duplicate",
    "rows_rejected",
    "bytes_read",
    "rejects_path",
    "unknown_columns",
    "duplicate_of",
    "dataset_version",
    "app_version",
    "seconds",
    "stage_seconds",
)


def _value(rec: RunRecord, column: str) -> Any:
    value = getattr(rec, column)
    if column == "stage_seconds" and value is not None:
        return Json(value)
    # PostgreSQL text cannot hold NUL: a message quoting untrusted text (a tampered
    # ``reason`` in blob metadata, %00 once unquoted) must not fail the ledger row
    if isinstance(value, str):
        return value.replace("\x00", "\\x00")
    if isinstance(value, list):
        return [v.replace("\x00", "\\x00") if isinstance(v, str) else v for v in value]
    return value


def insert(cur: Any, rec: RunRecord) -> int:
    values = [_value(rec, c) for c in _COLUMNS]
    placeholders = ", ".join(["%s"] * len(_COLUMNS))
    finished = "now()" if rec.status != "running" else "NULL"
    cur.execute(
        f"INSERT INTO etl_runs ({', '.join(_COLUMNS)}, finished_at)"
        f" VALUES ({placeholders}, {finished}) RETURNING run_id",
        values,
    )
    rec.run_id = int(cur.fetchone()[0])
    return rec.run_id


def finish(cur: Any, rec: RunRecord) -> None:
    assert rec.run_id is not None
    updates = [c for c in _COLUMNS if c not in ("run_uuid", "dataset", "blob_path")]
    cur.execute(
        "UPDATE etl_runs SET "
        + ", ".join(f"{c} = %s" for c in updates)
        + ", finished_at = now() WHERE run_id = %s",
        [*(_value(rec, c) for c in updates), rec.run_id],
    )


CLAIM_WAIT_SECONDS = 300.0  # how long a second invocation of a file waits for the first


def claim(cur: Any, dataset: str, blob_path: str, wait: float | None = None) -> bool:
    """Take the file's lock for the caller's transaction (released at its end, or by the
    server when the worker dies). Another invocation of the same file (any version) holds
    it: wait for it to finish, up to ``wait`` seconds, so that the caller then re-checks
    what it left (already loaded? moved? a newer version?) instead of giving up. False if
    the lock is still held after ``wait``.

    It must be the first statement of the caller's transaction: between tries that
    transaction is rolled back, so a waiting delivery holds no transaction open (through
    PgBouncer's transaction pooling, its server connection goes back to the pool meanwhile
    instead of sitting idle in transaction for up to ``CLAIM_WAIT_SECONDS``)."""
    key = f"sales_etl:{dataset}:{blob_path}"
    deadline = time.monotonic() + (CLAIM_WAIT_SECONDS if wait is None else wait)
    delay = 0.05
    while True:
        cur.execute("SELECT pg_try_advisory_xact_lock(hashtextextended(%s, 0))", (key,))
        if cur.fetchone()[0]:
            return True
        cur.connection.rollback()  # nothing else in it yet: the pooled connection is freed
        if time.monotonic() >= deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def claim_file(
    cur: Any,
    dataset: str,
    blob_path: str,
    etag: str | None,
    current: Callable[[], Moved | None] | None = None,
) -> int | None:
    """Claim one version of a file for the caller's transaction (``claim``: its first
    statement), then re-check what an invocation that held the lock before may have done.
    Returns the run that already loaded this very version (``etag``), if one did: the
    caller records a skip. Otherwise None: the version is the caller's to load.

    Raises ``Skipped``: ``in_progress`` (another invocation still holds the lock after
    ``CLAIM_WAIT_SECONDS``), or the code ``current()`` returns when this version is no
    longer in place (``gone``: moved away; ``superseded``: a newer version landed)."""
    if not claim(cur, dataset, blob_path):
        raise Skipped(f"{blob_path}: another invocation is still loading this file", code="in_progress")
    if etag is not None:
        prior = loaded_run(cur, dataset, blob_path, etag)
        if prior is not None:
            return prior
    gone = current() if current is not None else None
    if gone is not None:
        raise Skipped(f"{blob_path}: this version is no longer in place ({gone}): nothing to load", code=gone)
    return None


def loaded_run(cur: Any, dataset: str, blob_path: str, etag: str | None) -> int | None:
    """The run that already loaded exactly this blob version, if any."""
    cur.execute(
        "SELECT run_id FROM etl_runs WHERE dataset = %s AND blob_path = %s AND etag = %s"
        " AND status = 'loaded' ORDER BY run_id LIMIT 1",
        (dataset, blob_path, etag),
    )
    row = cur.fetchone()
    return int(row[0]) if row else None


def loaded_content(cur: Any, dataset: str, sha256: str) -> int | None:
    """The first run that loaded a file with this exact content, under any name."""
    cur.execute(
        "SELECT run_id FROM etl_runs WHERE dataset = %s AND content_sha256 = %s"
        " AND status = 'loaded' AND duplicate_of IS NULL ORDER BY run_id LIMIT 1",
        (dataset, sha256),
    )
    row = cur.fetchone()
    return int(row[0]) if row else None


def recent(conn: Any, limit: int = 20, blob: str | None = None) -> list[dict[str, Any]]:
    with conn.cursor(cursor_factory=RealDictCursor) as cur:
        # the text itself, not a LIKE pattern: '_' and '%' are common in file names
        where = "WHERE strpos(blob_path, %s) > 0" if blob else ""
        params: list[Any] = [blob] if blob else []
        cur.execute(
            "SELECT run_id, run_uuid::text, dataset, blob_path, attempt, trigger, status,"
            " reason_code, error, rows_read, rows_loaded, rows_duplicate, rows_rejected,"
            " rejects_path, duplicate_of, started_at, seconds"
            f" FROM etl_runs {where} ORDER BY run_id DESC LIMIT %s",
            [*params, limit],
        )
        return [dict(r) for r in cur.fetchall()]
