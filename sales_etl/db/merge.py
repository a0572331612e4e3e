"""The staged path of a load: rows COPied into a temporary staging table (each with its raw
record), the rows staging reveals as bad rejected with their reason (a key repeated in the
file, a value another unique index already holds), and one set-based merge into the target
(``INSERT .. SELECT .. ON CONFLICT``; in upsert mode, an update of the rows whose content
changed). Identifiers are quoted with ``psycopg2.sql.Identifier``; values only ever travel
as COPY data or parameters. Everything lives in the load's transaction (ON COMMIT DROP)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import psycopg2.errors
import pyarrow as pa
from psycopg2 import sql

from sales_etl.core.reasons import row_code
from sales_etl.db.copytext import copy_rows, copy_text, load_columns
from sales_etl.stages.records import RAW, Reject, record_fields
from sales_etl.stages.spec import Dataset

STAGE = "sales_etl_stage"
REJECTS = "sales_etl_late_rejects"
_MERGE_TRIES = 20  # merges retried after a concurrent load took a unique value


class Staging:
    """One load's staging table, created on first use. ``indexed``: index it by the
    business key, for the loader that asks whether a chunk's keys are staged."""

    def __init__(self, cur: Any, dataset: Dataset, run_id: int, indexed: bool = False) -> None:
        self.cur = cur
        self.dataset = dataset
        self.run_id = run_id
        self.exists = False  # the staging table exists
        self._indexed = indexed
        self._unique_cache: list[tuple[str, ...]] | None = None

    def copy(self, columns: dict[str, pa.Array], lines: np.ndarray) -> None:
        """Stage a chunk (with each row's raw record, for its rejects line)."""
        if not self.exists:
            self._create()
        copy_rows(
            self.cur,
            STAGE,
            [*load_columns(self.dataset), RAW],
            copy_text(columns, lines, self.dataset, self.run_id, raw=True),
        )

    def holds_any(self, keys: list[Any]) -> bool:
        """Whether any of these business-key values (one-column key) is staged."""
        self.cur.execute(
            sql.SQL("SELECT EXISTS (SELECT 1 FROM {s} WHERE {k} = ANY(%s))").format(
                s=sql.Identifier(STAGE), k=sql.Identifier(self.dataset.key_sql[0])
            ),
            (keys,),
        )
        return bool(self.cur.fetchone()[0])

    def uniques(self) -> list[tuple[str, ...]]:
        """The target's unique indexes other than the business key (read once)."""
        if self._unique_cache is None:
            self._unique_cache = self._unique_constraints()
        return self._unique_cache

    def merge(self, direct: int) -> tuple[int, int, Iterator[Reject]]:
        """Reject what staging reveals (in-file duplicates, unique conflicts), merge the
        rest. ``direct``: rows this run COPied straight into the target (earlier lines).
        Returns (rows rejected late, rows inserted, the late rejects: read from the
        database as they are written out, so memory stays flat)."""
        self.cur.execute(
            sql.SQL(
                "CREATE TEMPORARY TABLE {} (source_line integer, code text, other_line integer,"
                " detail text, raw text) ON COMMIT DROP"
            ).format(sql.Identifier(REJECTS))
        )
        moved = self._reject_in_file_duplicates(direct)
        for unique in self.uniques():
            moved += self._reject_unique_conflicts(unique)
        late, inserted = self._merge_checked()
        return moved + late, inserted, self._late_rejects()

    def _create(self) -> None:
        self.exists = True
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
        if self._indexed:  # looked up by key (Loader._may_go_direct)
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

    def _reject_in_file_duplicates(self, direct: int) -> int:
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
        if direct:
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
                found = sum(self._reject_unique_conflicts(u) for u in self.uniques())
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
