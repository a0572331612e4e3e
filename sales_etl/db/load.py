"""PostgreSQL loading: COPY straight into the target while no key collides, else COPY into a
temporary staging table and one set-based merge (``merge.Staging``; see ``Loader``).

Every identifier comes from a validated dataset spec and is quoted with
``psycopg2.sql.Identifier``; values only ever travel as COPY data or parameters.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from sales_etl.db.copytext import copy_rows, copy_text, load_columns
from sales_etl.db.merge import Staging
from sales_etl.stages.records import Reject
from sales_etl.stages.spec import Dataset


class Loader:
    """Loads one file's chunks inside the caller's transaction.

    Fast path: each chunk is COPied straight into the target under a savepoint. When a
    chunk collides with a stored business key (a re-sent file, overlapping files, a
    duplicate across chunks of this file), the savepoint is rolled back and that chunk
    goes to a temporary staging table, merged at the end with one set-based
    ``INSERT .. SELECT .. ON CONFLICT``. After a collision, an insert-mode dataset with a
    one-column plain key looks its next chunks' keys up first (``drop_stored``), so rows
    already stored are counted as duplicates without being encrypted or sent at all.
    Upsert datasets, and tables with another unique index, stage every chunk after the
    first collision (see ``_may_go_direct``). Either way the rows
    commit with the ledger row, or not at all.

    One connection, one transaction, no session state: the look-up runs in the load's own
    transaction (a second connection would need a second pooled server connection while
    the first is held, which deadlocks a PgBouncer pool full of loads), the staging table
    is dropped at commit, savepoints live inside the transaction.
    """

    def __init__(self, cur: Any, dataset: Dataset, run_id: int, lookup: bool = False) -> None:
        self.cur = cur
        self.dataset = dataset
        self.run_id = run_id
        self.direct = 0  # rows COPied straight into the target
        self.staged = 0  # rows COPied into staging
        self.dropped = 0  # rows found stored before loading: duplicates
        self._collided = False  # a chunk met a stored key
        key = dataset.key_sql
        self._can_lookup = (
            lookup and dataset.write_mode == "insert" and len(key) == 1 and key[0] in dataset.key_plain
        )
        self._stage = Staging(cur, dataset, run_id, indexed=self._can_lookup)
        # One COPY in flight on a worker thread while the caller prepares the next chunk:
        # the server ingests on one core while Python parses and encrypts on the other.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy")
        self._pending: Future[None] | None = None

    @property
    def filtering(self) -> bool:
        """True once stored keys are worth looking up before loading a chunk."""
        return self._collided and self._can_lookup

    def drop_stored(
        self, columns: dict[str, pa.Array], lines: np.ndarray
    ) -> tuple[dict[str, pa.Array], np.ndarray]:
        """Remove the rows whose key is already stored by another file (committed: read
        committed sees each statement's committed rows). Rows this run stored are left
        in, so that a repeat inside the file is reported as an in-file duplicate."""
        if not len(lines):
            return columns, lines
        key = self.dataset.key_sql[0]
        keys = columns[key]
        self._wait()  # the connection carries one statement at a time: the COPY first
        with self.cur.connection.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT {k} FROM {t} WHERE {k} = ANY(%s) AND etl_run_id IS DISTINCT FROM %s").format(
                    k=sql.Identifier(key), t=sql.Identifier(self.dataset.table)
                ),
                (keys.to_pylist(), self.run_id),
            )
            stored = [r[0] for r in cur.fetchall()]
        if not stored:
            return columns, lines
        keep = pc.invert(pc.is_in(keys, value_set=pa.array(stored, keys.type)))
        self.dropped += len(lines) - pc.sum(keep.cast(pa.int64())).as_py()
        return (
            {k: v.filter(keep) for k, v in columns.items()},
            lines[np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)],
        )

    def add(self, columns: dict[str, pa.Array], lines: np.ndarray) -> None:
        if not len(lines):
            return
        self._wait()
        # In the caller's context: the worker finds the invocation id of a log record there
        self._pending = self._pool.submit(contextvars.copy_context().run, self._load, columns, lines)

    def _wait(self) -> None:
        if self._pending is not None:
            pending, self._pending = self._pending, None
            pending.result()

    def close(self) -> None:
        """Wait for the COPY in flight (its error, if any, is raised) and stop the worker."""
        try:
            self._wait()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def _load(self, columns: dict[str, pa.Array], lines: np.ndarray) -> None:
        rows = len(lines)
        if self._may_go_direct(columns):
            payload = copy_text(columns, lines, self.dataset, self.run_id)
            self.cur.execute("SAVEPOINT sales_etl_chunk")
            try:
                self._copy(self.dataset.table, load_columns(self.dataset), payload)
            except psycopg2.errors.UniqueViolation:
                self.cur.execute("ROLLBACK TO SAVEPOINT sales_etl_chunk")
                self._collided = True
            else:
                self.cur.execute("RELEASE SAVEPOINT sales_etl_chunk")
                self.direct += rows
                return
        self._stage.copy(columns, lines)
        self.staged += rows

    def _may_go_direct(self, columns: dict[str, pa.Array]) -> bool:
        """Whether a chunk may be COPied straight into the target. A row COPied there can
        no longer be rejected, so it must never be a later line than a staged row it
        clashes with: after the first collision only a chunk none of whose keys is staged
        goes direct (insert mode, one plain key, no other unique index); every other
        chunk is staged, where the first occurrence wins and each row keeps its raw
        record."""
        if not self._collided:
            return True
        if not self._can_lookup or self._stage.uniques():
            return False
        if not self._stage.exists:
            return True
        return not self._stage.holds_any(columns[self.dataset.key_sql[0]].to_pylist())

    def finish(self) -> tuple[int, int, Iterator[Reject]]:
        """Reject what staging reveals (in-file duplicates, unique conflicts), merge the
        rest. Returns (rows loaded, rows that were already stored, the late rejects: read
        from the database as they are written out, so memory stays flat)."""
        self.close()
        if not self._stage.exists:
            return self.direct, self.dropped, iter(())
        moved, inserted, late = self._stage.merge(self.direct)
        return (self.direct + inserted, self.dropped + self.staged - moved - inserted, late)

    def _copy(self, table: str, columns: list[str], payload: pa.Buffer) -> None:
        copy_rows(self.cur, table, columns, payload)
