"""PostgreSQL loading: COPY into a temporary staging table, then one set-based merge.

Every identifier comes from a validated dataset spec and is quoted with
``psycopg2.sql.Identifier``; values only ever travel as COPY data or parameters.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
from psycopg2 import sql

from .datasets import Dataset

STAGE = "sales_etl_stage"
_ESCAPES = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def create_staging(cur: Any, dataset: Dataset) -> None:
    """A temporary table shaped like the target's data columns, plus the source line."""
    cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(STAGE)))
    cur.execute(
        sql.SQL("CREATE TEMPORARY TABLE {stage} ON COMMIT DROP AS SELECT {cols} FROM {target}"
                " WITH NO DATA").format(
            stage=sql.Identifier(STAGE),
            cols=sql.SQL(", ").join(map(sql.Identifier, dataset.sql_columns)),
            target=sql.Identifier(dataset.table)))
    cur.execute(sql.SQL("ALTER TABLE {} ADD COLUMN line_no bigint NOT NULL")
                .format(sql.Identifier(STAGE)))


def copy_text(frame: pd.DataFrame, lines: np.ndarray, dataset: Dataset) -> bytes:
    """Render rows in COPY's text format (tab-separated, \\N for NULL, escaped)."""
    escape = {c.sql[0] for c in dataset.columns if c.type in ("text", "enum") and not c.sensitive}
    hashes = {c.hash_column for c in dataset.sensitive}
    columns: list[Any] = []
    for name in dataset.sql_columns:
        series = frame[name]
        if name in hashes:
            series = "\\\\x" + series
        elif name in escape and len(series):
            needs = series.str.contains(r"[\\\t\n\r]", regex=True, na=False)
            if needs.any():
                series = series.where(~needs, series[needs].map(_escape))
        values = series.to_numpy(dtype=object)
        nulls = pd.isna(values)
        if nulls.any():
            values = np.where(nulls, "\\N", values)
        columns.append(values.tolist())
    columns.append(lines.astype(str).tolist())
    body = "\n".join(map("\t".join, zip(*columns, strict=True)))
    return (body + "\n").encode("utf-8") if body else b""


def _escape(value: str) -> str:
    return "".join(_ESCAPES.get(ch, ch) for ch in value)


def copy_into_staging(cur: Any, payload: bytes, dataset: Dataset) -> None:
    if not payload:
        return
    cols = [*dataset.sql_columns, "line_no"]
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN").format(
            sql.Identifier(STAGE), sql.SQL(", ").join(map(sql.Identifier, cols))).as_string(cur),
        io.BytesIO(payload))


def remove_in_file_duplicates(cur: Any, dataset: Dataset) -> list[tuple[int, int]]:
    """Delete every staged row whose business key appeared on an earlier line of the same
    file; return (line, first line) of each, to be written to the rejects."""
    key = sql.SQL(", ").join(map(sql.Identifier, dataset.key_sql))
    match = sql.SQL(" AND ").join(
        sql.SQL("s.{c} = d.{c}").format(c=sql.Identifier(c)) for c in dataset.key_sql)
    cur.execute(sql.SQL(
        "DELETE FROM {stage} s USING ("
        " SELECT {key}, min(line_no) AS first_line FROM {stage} GROUP BY {key}"
        " HAVING count(*) > 1) d"
        " WHERE {match} AND s.line_no > d.first_line"
        " RETURNING s.line_no, d.first_line").format(
            stage=sql.Identifier(STAGE), key=key, match=match))
    return sorted((int(a), int(b)) for a, b in cur.fetchall())


def merge(cur: Any, dataset: Dataset, run_id: int) -> int:
    """Insert the staged rows into the target; rows whose business key is already stored
    are skipped (insert mode) or update it (upsert mode). Returns rows written."""
    cols = dataset.sql_columns
    target_cols = sql.SQL(", ").join(map(sql.Identifier, [*cols, "etl_run_id"]))
    source_cols = sql.SQL(", ").join(map(sql.Identifier, cols))
    key = sql.SQL(", ").join(map(sql.Identifier, dataset.key_sql))
    if dataset.write_mode == "upsert":
        updates = [c for c in (*cols, "etl_run_id") if c not in dataset.key_sql]
        action = sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
            sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in updates))
    else:
        action = sql.SQL("DO NOTHING")
    cur.execute(sql.SQL(
        "INSERT INTO {target} ({target_cols}) SELECT {source_cols}, %s FROM {stage}"
        " ORDER BY line_no ON CONFLICT ({key}) {action}").format(
            target=sql.Identifier(dataset.table), target_cols=target_cols,
            source_cols=source_cols, stage=sql.Identifier(STAGE), key=key, action=action),
        (run_id,))
    return int(cur.rowcount)
