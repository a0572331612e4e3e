"""PostgreSQL loading: COPY straight into the target while no key collides, else COPY into a
temporary staging table and one set-based merge (see ``Loader``).

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

from .datasets import Dataset
from .reasons import row_code
from .records import RAW, Reject, record_fields

STAGE = "sales_etl_stage"
REJECTS = "sales_etl_late_rejects"
_MERGE_TRIES = 20  # merges retried after a concurrent load took a unique value
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def load_columns(dataset: Dataset) -> list[str]:
    """The target columns a load writes: data, blind indexes, then the lineage."""
    return [*dataset.sql_columns, "etl_run_id", "source_line"]


def copy_text(
    columns: dict[str, pa.Array], lines: np.ndarray, dataset: Dataset, run_id: int, raw: bool = False
) -> pa.Buffer:
    """Render rows in COPY's text format (tab-separated, \\N for NULL, escaped), with Arrow
    kernels: no Python loop over rows. ``raw``: add each row's raw record (for staging)."""
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
    parts.append(pc.cast(pa.array(lines), pa.string()))
    if raw:
        parts.append(_raw_text(columns.get(RAW), len(lines)))
    # the last field carries the row's newline, so one join makes the whole payload
    parts[-1] = pc.binary_join_element_wise(parts[-1], "", "\n")
    rows = pc.binary_join_element_wise(*parts, "\t")
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset : rows.offset + len(rows) + 1]
    start, end = int(offsets[0]), int(offsets[-1])
    return rows.buffers()[2].slice(start, end - start)  # the rows' bytes, back to back: no copy


def _raw_text(values: pa.Array | None, n: int) -> pa.Array:
    """Raw records as one escaped COPY text field each, without their line end."""
    if values is None:
        return pa.array(np.full(n, "\\N", dtype=object), pa.string())
    text = pc.utf8_rtrim(values.cast(pa.string()), characters="\r\n")
    for char, escaped in _ESCAPES.items():  # the backslash first
        text = pc.replace_substring(text, char, escaped)
    return text


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
        self._staging = False  # the staging table exists
        self._collided = False  # a chunk met a stored key
        self._unique_cache: list[tuple[str, ...]] | None = None
        key = dataset.key_sql
        self._can_lookup = (
            lookup and dataset.write_mode == "insert" and len(key) == 1 and key[0] in dataset.key_plain
        )
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
        if not self._staging:
            self._create_staging()
        self._copy(
            STAGE,
            [*load_columns(self.dataset), RAW],
            copy_text(columns, lines, self.dataset, self.run_id, raw=True),
        )
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
        if not self._can_lookup or self._uniques():
            return False
        if not self._staging:
            return True
        key = self.dataset.key_sql[0]
        self.cur.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {s} WHERE {k} = ANY(%s))").format(
                s=sql.Identifier(STAGE), k=sql.Identifier(key)
            ),
            (columns[key].to_pylist(),),
        )
        return not self.cur.fetchone()[0]

    def _uniques(self) -> list[tuple[str, ...]]:
        if self._unique_cache is None:
            self._unique_cache = self._unique_constraints()
        return self._unique_cache

    def finish(self) -> tuple[int, int, Iterator[Reject]]:
        """Reject what staging reveals (in-file duplicates, unique conflicts), merge the
        rest. Returns (rows loaded, rows that were already stored, the late rejects: read
        from the database as they are written out, so memory stays flat)."""
        self.close()
        if not self._staging:
            return self.direct, self.dropped, iter(())
        self.cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} (source_line integer, code text, other_line integer,"
                " detail text, raw text) ON COMMIT DROP"
            ).format(sql.Identifier(REJECTS))
        )
        moved = self._reject_in_file_duplicates()
        for unique in self._uniques():
            moved += self._reject_unique_conflicts(unique)
        late, inserted = self._merge_checked()
        moved += late
        return (self.direct + inserted, self.dropped + self.staged - moved - inserted, self._late_rejects())

    def _copy(self, table: str, columns: list[str], payload: pa.Buffer) -> None:
        self.cur.copy_expert(
            sql.SQL("COPY {} ({}) FROM STDIN")
            .format(sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
            .as_string(self.cur),
            pa.BufferReader(payload),
            size=1 << 20,
        )

    def _create_staging(self) -> None:
        self._staging = True
        self.cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols},"
                " NULL::text AS {raw} FROM {target} WITH NO DATA"
            ).format(
                stage=sql.Identifier(STAGE),
                cols=sql.SQL(", ").join(map(sql.Identifier, load_columns(self.dataset))),
                raw=sql.Identifier(RAW),
                target=sql.Identifier(self.dataset.table),
            )
        )
        if self._can_lookup:  # (see _may_go_direct)
            self.cur.execute(
                sql.SQL("CREATE INDEX ON {} ({})").format(
                    sql.Identifier(STAGE), sql.Identifier(self.dataset.key_sql[0])
                )
            )

    def _move(self, select: sql.Composable, params: tuple[Any, ...] = ()) -> int:
        """Move the staged rows ``select`` names into the late rejects."""
        self.cur.execute(
            sql.SQL("INSERT INTO {} (source_line, code, other_line, detail, raw) ").format(
                sql.Identifier(REJECTS)
            )
            + select,
            params,
        )
        moved = int(self.cur.rowcount)
        if moved:
            self.cur.execute(
                sql.SQL("DELETE FROM {stage} s USING {rejects} r WHERE s.source_line = r.source_line").format(
                    stage=sql.Identifier(STAGE), rejects=sql.Identifier(REJECTS)
                )
            )
        return moved

    def _reject_in_file_duplicates(self) -> int:
        """Staged rows whose key appeared on an earlier line of this file: earlier in
        staging, or COPied to the target by this run (always earlier: see ``_load``)."""
        keys = self.dataset.key_sql
        moved = self._move(
            sql.SQL(
                "SELECT s.source_line, 'duplicate_in_file', d.first_line, NULL, s.{raw}"
                " FROM {stage} s JOIN (SELECT {key}, min(source_line) AS first_line FROM {stage}"
                " GROUP BY {key} HAVING count(*) > 1) d ON {match}"
                " WHERE s.source_line > d.first_line"
            ).format(
                raw=sql.Identifier(RAW),
                stage=sql.Identifier(STAGE),
                key=_list(keys),
                match=_match("s", "d", keys),
            )
        )
        if self.direct:
            moved += self._move(
                sql.SQL(
                    "SELECT s.source_line, 'duplicate_in_file', t.source_line, NULL, s.{raw}"
                    " FROM {stage} s JOIN {target} t ON {match} WHERE t.etl_run_id = %s"
                ).format(
                    raw=sql.Identifier(RAW),
                    stage=sql.Identifier(STAGE),
                    target=sql.Identifier(self.dataset.table),
                    match=_match("s", "t", keys),
                ),
                (self.run_id,),
            )
        return moved

    def _unique_constraints(self) -> list[tuple[str, ...]]:
        """The target's unique indexes other than the business key, over loaded columns."""
        self.cur.execute(
            "SELECT array_agg(a.attname::text ORDER BY k.ord) FROM pg_index i"
            " CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)"
            " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
            " WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indpred IS NULL"
            " AND i.indexprs IS NULL GROUP BY i.indexrelid ORDER BY i.indexrelid",
            (self.dataset.table,),
        )
        loaded = set(self.dataset.sql_columns)
        key = set(self.dataset.key_sql)
        return [tuple(cols) for (cols,) in self.cur.fetchall() if set(cols) <= loaded and set(cols) != key]

    def _reject_unique_conflicts(self, unique: tuple[str, ...]) -> int:
        """Staged rows that would break a unique constraint: a stored row (or one of this
        file, loaded directly) with another key holds the value, or an earlier staged line."""
        detail = ", ".join(unique)
        keys = self.dataset.key_sql
        moved = self._move(
            sql.SQL(
                "SELECT s.source_line, 'unique_conflict',"
                " CASE WHEN t.etl_run_id = %s THEN t.source_line END, %s, s.{raw}"
                " FROM {stage} s JOIN {target} t ON {match}"
                " WHERE ({skey}) IS DISTINCT FROM ({tkey})"
            ).format(
                raw=sql.Identifier(RAW),
                stage=sql.Identifier(STAGE),
                target=sql.Identifier(self.dataset.table),
                match=_match("s", "t", unique),
                skey=_list(keys, "s"),
                tkey=_list(keys, "t"),
            ),
            (self.run_id, detail),
        )
        moved += self._move(
            sql.SQL(
                "SELECT s.source_line, 'unique_conflict', d.first_line, %s, s.{raw}"
                " FROM {stage} s JOIN (SELECT {cols}, min(source_line) AS first_line FROM {stage}"
                " GROUP BY {cols} HAVING count(*) > 1) d ON {match}"
                " WHERE s.source_line > d.first_line"
            ).format(
                raw=sql.Identifier(RAW),
                stage=sql.Identifier(STAGE),
                cols=_list(unique),
                match=_match("s", "d", unique),
            ),
            (detail,),
        )
        return moved

    def _late_rejects(self) -> Iterator[Reject]:
        key = ", ".join(self.dataset.business_key)
        with self.cur.connection.cursor(name="sales_etl_late_rejects") as named:
            named.itersize = 5000
            named.execute(
                sql.SQL(
                    "SELECT source_line, code, other_line, detail, raw FROM {} ORDER BY source_line"
                ).format(sql.Identifier(REJECTS))
            )
            for line, code, other, detail, raw in named:
                if code == "duplicate_in_file":
                    reason = f"{key} already appears on line {other}"
                elif other is not None:
                    reason = f"{detail} must be unique and is already used on line {other}"
                else:
                    reason = f"{detail} must be unique and is already stored for another {key}"
                yield Reject(int(line), row_code(code), reason, record_fields((raw or "").encode()))

    def _merge_checked(self) -> tuple[int, int]:
        """Merge the staged rows; returns (rows rejected late, rows inserted).

        The unique-conflict check sees committed rows only: a concurrent load may commit a
        value of another unique index (two files sharing an email) between the check and
        the merge, or hold it uncommitted while the merge waits for it. The merge then
        fails with a unique violation (the business key itself is covered by
        ``ON CONFLICT``): it is rolled back to its savepoint, the check runs again (it now
        sees the committed row) and the merge is retried. Each retry follows a commit by
        another load, so the loop ends; it is bounded all the same."""
        moved = 0
        for _ in range(_MERGE_TRIES):
            self.cur.execute("SAVEPOINT sales_etl_merge")
            try:
                inserted = self._merge()
            except psycopg2.errors.UniqueViolation:
                self.cur.execute("ROLLBACK TO SAVEPOINT sales_etl_merge")
                found = sum(self._reject_unique_conflicts(u) for u in self._uniques())
                if not found:
                    raise
                moved += found
                continue
            self.cur.execute("RELEASE SAVEPOINT sales_etl_merge")
            return moved, inserted
        return moved, self._merge()

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
            compare = [
                c for c in self.dataset.sql_columns if c not in tokens and c not in self.dataset.key_sql
            ]
            changed = (
                sql.SQL("({}) IS DISTINCT FROM ({})").format(
                    sql.SQL(", ").join(sql.SQL("t.{}").format(sql.Identifier(c)) for c in compare),
                    sql.SQL(", ").join(sql.SQL("EXCLUDED.{}").format(sql.Identifier(c)) for c in compare),
                )
                if compare
                else sql.SQL("false")
            )
            action = sql.SQL("DO UPDATE SET {} WHERE {}").format(
                sql.SQL(", ").join(
                    sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates
                ),
                changed,
            )
        else:
            action = sql.SQL("DO NOTHING")
        self.cur.execute(
            sql.SQL(
                "INSERT INTO {target} AS t ({cols}) SELECT {cols} FROM {stage} ON CONFLICT ({key}) {action}"
            ).format(
                target=sql.Identifier(self.dataset.table),
                cols=column_list,
                stage=sql.Identifier(STAGE),
                key=key,
                action=action,
            )
        )
        return int(self.cur.rowcount)


def _list(columns: tuple[str, ...], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(sql.Identifier(alias, c) if alias else sql.Identifier(c) for c in columns)


def _match(a: str, b: str, columns: tuple[str, ...]) -> sql.Composable:
    return sql.SQL(" AND ").join(
        sql.SQL("{a}.{c} = {b}.{c}").format(a=sql.Identifier(a), b=sql.Identifier(b), c=sql.Identifier(c))
        for c in columns
    )
