"""Read rows back for an operator: find by business key, decrypt the sensitive columns.

A sensitive key (e.g. ``customers.customer_id``) is stored as a Fernet token, which differs
at every encryption: it is found through its blind index (the keyed hash beside it)."""

from __future__ import annotations

from typing import Any

from psycopg2 import sql
from psycopg2.extras import RealDictCursor

from sales_etl.config.keys import make_protector
from sales_etl.config.settings import Settings
from sales_etl.core.errors import ConfigError
from sales_etl.db.connection import connect
from sales_etl.stages.spec import Dataset


def fetch_decrypted(settings: Settings, dataset: Dataset, key: str) -> dict[str, Any] | None:
    if len(dataset.key_sql) != 1:
        raise ConfigError(
            f"dataset {dataset.name} has a composite key "
            f"({', '.join(dataset.business_key)}); look up is by one key"
        )
    protector = make_protector(settings, dataset)
    key_column = dataset.column(dataset.business_key[0])
    column = dataset.key_sql[0]  # a sensitive key's blind-index column
    value: str | bytes = key.strip()
    if key_column.sensitive:
        if protector is None:
            raise ConfigError(f"dataset {dataset.name}: no keys to look up a sensitive key")
        plain = key.strip()
        plain = {"lower": plain.lower(), "upper": plain.upper()}.get(key_column.normalize, plain)
        value = protector.hash(plain)
    conn = connect(settings.require_database())
    try:
        with conn.cursor(cursor_factory=RealDictCursor) as cur:
            cur.execute(
                sql.SQL("SELECT * FROM {} WHERE {} = %s").format(
                    sql.Identifier(dataset.table), sql.Identifier(column)
                ),
                (value,),
            )
            row = cur.fetchone()
    finally:
        conn.close()
    if row is None:
        return None
    out = dict(row)
    for col in dataset.sensitive:
        name = col.sql[0]
        if protector is not None and out.get(name):
            try:
                out[name] = protector.decrypt(out[name])
            except ValueError:
                raise ConfigError(
                    f"{dataset.table}.{name} of this row does not decrypt with any key in "
                    "FERNET_KEYS: the keys configured are not the ones it was encrypted with "
                    "(after a rotation, list the new key first and the old one after it)",
                    code="wrong_key",
                ) from None
        if isinstance(out.get(col.hash_column), memoryview | bytes):
            out[col.hash_column] = bytes(out[col.hash_column]).hex()[:16] + "..."
    return out
