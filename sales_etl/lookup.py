"""Read rows back for an operator: find by business key, decrypt the sensitive columns."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql
from psycopg2.extras import RealDictCursor

from .datasets import Dataset
from .db import connect
from .pipeline import make_protector
from .settings import Settings


def fetch_decrypted(settings: Settings, dataset: Dataset, key: str) -> dict[str, Any] | None:
    if len(dataset.key_sql) != 1:
        raise ValueError(f"dataset {dataset.name} has a composite key; look up is by one key")
    protector = make_protector(settings, dataset)
    conn = connect(settings.require_database())
    try:
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(sql.SQL("SELECT * FROM {} WHERE {} = %s").format(
                sql.Identifier(dataset.table), sql.Identifier(dataset.key_sql[0])), (key,))
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    out = dict(row)
    for col in dataset.sensitive:
        name = col.sql[0]
        if protector is not None and out.get(name):
            out[name] = protector.decrypt(out[name])
        if isinstance(out.get(col.hash_column), memoryview | bytes):
            out[col.hash_column] = bytes(out[col.hash_column]).hex()[:16] + "..."
    return out
