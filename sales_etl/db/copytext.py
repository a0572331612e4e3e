"""Rows in COPY's text format, rendered with Arrow kernels (no Python loop over rows), and
the COPY that sends them. Identifiers are quoted with ``psycopg2.sql.Identifier``; values
only ever travel as COPY data."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from psycopg2 import sql

from sales_etl.stages.records import RAW
from sales_etl.stages.spec import Dataset

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


def copy_rows(cur: Any, table: str, columns: list[str], payload: pa.Buffer) -> None:
    """COPY ``payload`` (COPY text, as ``copy_text`` renders it) into ``table``'s ``columns``."""
    cur.copy_expert(
        sql.SQL("COPY {} ({}) FROM STDIN")
        .format(sql.Identifier(table), sql.SQL(", ").join(map(sql.Identifier, columns)))
        .as_string(cur),
        pa.BufferReader(payload),
        size=1 << 20,
    )
