"""PostgreSQL loading: COPY straight into the target while no key collides, else COPY into a
temporary staging table and one set-based merge (see ``Loader``).

Every identifier comes from a validated dataset spec and is quoted with
``psycopg2.sql.Identifier``; values only ever travel as COPY data or parameters.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import psycopg2.errors
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from .datasets import Dataset

STAGE = "sales_etl_stage"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def load_columns(dataset: Dataset) -> list[str]:
    """The target columns a load writes: data, blind indexes, then the lineage."""
    return [*dataset.sql_columns, "etl_run_id", "source_line"]


def copy_text(columns: dict[str, pa.Array], lines: np.ndarray, dataset: Dataset,
              run_id: int) -> pa.Buffer:
    """Render rows in COPY's text format (tab-separated, \\N for NULL, escaped), with Arrow
    kernels: no Python loop over rows."""
    if not len(lines):
        return pa.py_buffer(b"")
    escape = {c.sql[0] for c in dataset.columns if c.type in ("text", "enum") and not c.sensitive}
    hashes = {c.hash_column for c in dataset.sensitive}
    parts: list[Any] = []
    for name in dataset.sql_columns:
        values = columns[name]
        if name in hashes:
            values = pc.binary_join_element_wise("\\\\x", values, "")
        elif name in escape and pc.any(pc.match_substring_regex(values, r"[\\\t\n\r]")).as_py():
            for char, escaped in _ESCAPES.items():  # the backslash first
                values = pc.replace_substring(values, char, escaped)
        parts.append(pc.fill_null(values, "\\N"))
    parts.append(pa.array(np.full(len(lines), str(run_id), dtype=object), pa.string()))
    # the last field carries the row's newline, so one join makes the whole payload
    parts.append(pc.binary_join_element_wise(pc.cast(pa.array(lines), pa.string()), "", "\n"))
    rows = pc.binary_join_element_wise(*parts, "\t")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset: rows.offset + len(rows) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    return rows.buffers()[2].slice(start, end - start)  # the rows' bytes, back to back: no copy


class Loader:
    """Loads one file's chunks inside the caller's transaction.

    Fast path: each chunk is COPied straight into the target under a savepoint. When a
    chunk collides with a stored business key (a re-sent file, overlapping files, a
    duplicate across chunks of this file), the savepoint is rolled back and that chunk
    goes to a temporary staging table, merged at the end with one set-based
    ``INSERT .. SELECT .. ON CONFLICT``. After a collision, an insert-mode dataset with a
    one-column plain key looks its next chunks' keys up first (``drop_stored``), so rows
    already stored are counted as duplicates without being encrypted or sent at all.
    Upsert datasets stage every chunk after the first collision. Either way the rows
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
        self._staging = False  # the staging table exists
        self._collided = False  # a chunk met a stored key
        key = dataset.key_sql
        self._can_lookup = (lookup and dataset.write_mode == "insert"
                            and len(key) == 1 and key[0] in dataset.key_plain)
        # One COPY in flight on a worker thread while the caller prepares the next chunk:
        # the server ingests on one core while Python parses and encrypts on the other.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="copy")
        self._pending: Future[None] | None = None

    @property
    def filtering(self) -> bool:
        """True once stored keys are worth looking up before loading a chunk."""
        return self._collided and self._can_lookup

    def drop_stored(self, columns: dict[str, pa.Array], lines: np.ndarray
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
            cur.execute(sql.SQL("SELECT {k} FROM {t} WHERE {k} = ANY(%s)"
                                " AND etl_run_id IS DISTINCT FROM %s").format(
                k=sql.Identifier(key), t=sql.Identifier(self.dataset.table)),
                (keys.to_pylist(), self.run_id))
            stored = [r[0] for r in cur.fetchall()]
        if not stored:
            return columns, lines
        keep = pc.invert(pc.is_in(keys, value_set=pa.array(stored, keys.type)))
        self.dropped += len(lines) - pc.sum(keep.cast(pa.int64())).as_py()
        return ({k: v.filter(keep) for k, v in columns.items()},
                lines[np.asarray(keep.to_numpy(zero_copy_only=False), dtype=bool)])

    def add(self, columns: dict[str, pa.Array], lines: np.ndarray) -> None:
        if not len(lines):
            return
        payload = copy_text(columns, lines, self.dataset, self.run_id)
        self._wait()
        self._pending = self._pool.submit(self._load, payload, len(lines))

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

    def _load(self, payload: pa.Buffer, rows: int) -> None:
        stage_all = self._collided and not self._can_lookup
        if not stage_all:
            self.cur.execute("SAVEPOINT sales_etl_chunk")
            try:
                self._copy(self.dataset.table, payload)
            except psycopg2.errors.UniqueViolation:
                self.cur.execute("ROLLBACK TO SAVEPOINT sales_etl_chunk")
                self._collided = True
            else:
                self.cur.execute("RELEASE SAVEPOINT sales_etl_chunk")
                self.direct += rows
                return
        if not self._staging:
            self._create_staging()
        self._copy(STAGE, payload)
        self.staged += rows

    def finish(self) -> tuple[int, int, list[tuple[int, int]]]:
        """Merge what was staged. Returns (rows loaded, rows that were already stored,
        in-file duplicates as (line, line of the first occurrence))."""
        self.close()
        if not self._staging:
            return self.direct, self.dropped, []
        dupes = self._remove_in_file_duplicates()
        inserted = self._merge()
        return (self.direct + inserted, self.dropped + self.staged - len(dupes) - inserted,
                dupes)

    def _copy(self, table: str, payload: pa.Buffer) -> None:
        self.cur.copy_expert(
            sql.SQL("COPY {} ({}) FROM STDIN").format(
                sql.Identifier(table),
                sql.SQL(", ").join(map(sql.Identifier, load_columns(self.dataset)))
            ).as_string(self.cur),
            pa.BufferReader(payload), size=1 << 20)

    def _create_staging(self) -> None:
        self._staging = True
        self.cur.execute(
            sql.SQL("CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {target}"
                    " WITH NO DATA").format(
                stage=sql.Identifier(STAGE),
                cols=sql.SQL(", ").join(map(sql.Identifier, load_columns(self.dataset))),
                target=sql.Identifier(self.dataset.table)))

    def _remove_in_file_duplicates(self) -> list[tuple[int, int]]:
        """Staged rows whose key appeared on an earlier line of this file: either earlier
        in staging, or already COPied to the target by this run."""
        keys = self.dataset.key_sql
        key = sql.SQL(", ").join(map(sql.Identifier, keys))

        def match(a: str, b: str) -> sql.Composable:
            return sql.SQL(" AND ").join(
                sql.SQL("{a}.{c} = {b}.{c}").format(a=sql.Identifier(a), b=sql.Identifier(b),
                                                    c=sql.Identifier(c)) for c in keys)

        stage, target = sql.Identifier(STAGE), sql.Identifier(self.dataset.table)
        self.cur.execute(sql.SQL(
            "DELETE FROM {stage} s USING ("
            " SELECT {key}, min(source_line) AS first_line FROM {stage} GROUP BY {key}"
            " HAVING count(*) > 1) d"
            " WHERE {match} AND s.source_line > d.first_line"
            " RETURNING s.source_line, d.first_line").format(
                stage=stage, key=key, match=match("s", "d")))
        dupes = [(int(a), int(b)) for a, b in self.cur.fetchall()]
        if self.direct:
            self.cur.execute(sql.SQL(
                "DELETE FROM {stage} s USING {target} t WHERE {match} AND t.etl_run_id = %s"
                " RETURNING s.source_line, t.source_line").format(
                    stage=stage, target=target, match=match("s", "t")), (self.run_id,))
            dupes += [(int(a), int(b)) for a, b in self.cur.fetchall()]
        return sorted(dupes)

    def _merge(self) -> int:
        cols = load_columns(self.dataset)
        column_list = sql.SQL(", ").join(map(sql.Identifier, cols))
        key = sql.SQL(", ").join(map(sql.Identifier, self.dataset.key_sql))
        if self.dataset.write_mode == "upsert":
            # Update only rows whose content changed (compared on plain columns and blind
            # indexes: tokens differ at every encryption), so unchanged rows count as
            # duplicates and keep their lineage.
            tokens = {c.sql[0] for c in self.dataset.sensitive}
            updates = [c for c in cols if c not in self.dataset.key_sql]
            compare = [c for c in self.dataset.sql_columns
                       if c not in tokens and c not in self.dataset.key_sql]
            changed = sql.SQL("({}) IS DISTINCT FROM ({})").format(
                sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in compare),
                sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c))
                                   for c in compare)) if compare else sql.SQL("false")
            action = sql.SQL("DO UPDATE SET {} WHERE {}").format(sql.SQL(", ").join(
                sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates),
                changed)
        else:
            action = sql.SQL("DO NOTHING")
        self.cur.execute(sql.SQL(
            "INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {stage}"
            " ON CONFLICT ({key}) {action}").format(
                target=sql.Identifier(self.dataset.table), cols=column_list,
                stage=sql.Identifier(STAGE), key=key, action=action))
        return int(self.cur.rowcount)
