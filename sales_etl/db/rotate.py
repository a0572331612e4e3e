"""Key rotation, in batches, resumable, without long locks.

Fernet keys (``sales-etl rotate-keys``): with the new key first in ``FERNET_KEYS`` and the
old ones after it, every token not made with the newest key is re-encrypted
(``MultiFernet.rotate``). Rows stay readable throughout, since every listed key decrypts.
Each batch is its own short transaction; the position reached is kept in
``etl_key_rotation`` (created by migration V3), so an interrupted run continues where it
stopped.

Blind-index key (``sales-etl rotate-keys --blind-index``): every hash is recomputed from
the decrypted value under ``BLIND_INDEX_KEY_NEW``. The old and new hashes do not match
each other, so loads must not run meanwhile: stop the function app, rotate, set
``BLIND_INDEX_KEY`` to the new key, start the app (docs/operations.md, Rotating keys).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import InvalidToken
from psycopg2 import sql
from psycopg2.extras import execute_values

from sales_etl.config.settings import Settings
from sales_etl.core.errors import ConfigError
from sales_etl.db.connection import connect
from sales_etl.stages.protect import Protector, blind_index
from sales_etl.stages.spec import Dataset

PROGRESS_TABLE = "etl_key_rotation"


@dataclass
class Rotation:
    dataset: str
    scanned: int = 0
    rotated: int = 0  # values re-encrypted (or re-hashed)
    batches: int = 0
    resumed_from: int = 0
    total: int = 0  # rows to scan when this run started (after the resume point)
    left: int = 0  # rows not yet scanned (0 when the run finished)


@dataclass
class Report:
    datasets: list[Rotation] = field(default_factory=list)

    @property
    def rotated(self) -> int:
        return sum(r.rotated for r in self.datasets)

    @property
    def left(self) -> int:
        return sum(r.left for r in self.datasets)


def _fingerprint(kind: str, key: bytes) -> str:
    return f"{kind}:{hashlib.sha256(key).hexdigest()[:16]}"


def rotate(
    settings: Settings,
    datasets: list[Dataset],
    *,
    batch: int = 1000,
    blind_index_key: bytes | None = None,
    progress: Callable[[Rotation], None] | None = None,
) -> Report:
    """Re-encrypt (or, with ``blind_index_key``, re-hash) every sensitive value."""
    fernet_keys, blind_key = settings.require_keys()
    protector = Protector(fernet_keys, blind_key)
    kind, key = ("blind", blind_index_key) if blind_index_key else ("fernet", fernet_keys[0])
    mark = _fingerprint(kind, key)
    conn = connect(settings.require_admin_database())
    report = Report()
    try:
        for dataset in datasets:
            if dataset.sensitive and _table_exists(conn, dataset.table):
                report.datasets.append(
                    _rotate_table(conn, dataset, protector, batch, mark, blind_index_key, progress)
                )
    finally:
        conn.close()
    return report


def _table_exists(conn: Any, table: str) -> bool:
    with conn.cursor() as cur:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
        exists = bool(cur.fetchone()[0])
    conn.commit()
    return exists


def _rotate_table(
    conn: Any,
    dataset: Dataset,
    protector: Protector,
    batch: int,
    mark: str,
    blind_key: bytes | None,
    progress: Callable[[Rotation], None] | None,
) -> Rotation:
    report = Rotation(dataset.name)
    table, row_id = sql.Identifier(dataset.table), sql.Identifier(dataset.row_id)
    tokens = [c.sql[0] for c in dataset.sensitive]
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT mark, last_row_id, done FROM {} WHERE dataset = %s").format(
                sql.Identifier(PROGRESS_TABLE)
            ),
            (dataset.name,),
        )
        row = cur.fetchone()
    last = 0
    if row is not None and row[0] == mark:
        if row[2]:
            conn.commit()
            return report  # this rotation already finished for this dataset
        last = report.resumed_from = int(row[1])
    report.total = report.left = _count_after(conn, table, row_id, last)
    while True:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT {id}, {cols} FROM {t} WHERE {id} > %s ORDER BY {id} LIMIT %s").format(
                    id=row_id, t=table, cols=sql.SQL(", ").join(map(sql.Identifier, tokens))
                ),
                (last, batch),
            )
            rows = cur.fetchall()
            if not rows:
                _save(cur, dataset.name, mark, last, done=True)
                conn.commit()
                report.left = 0
                return report
            changes = []
            for rid, *values in rows:
                try:
                    new = _new_values(protector, values, blind_key)
                except (ValueError, InvalidToken):
                    conn.rollback()
                    raise ConfigError(
                        f"{dataset.table} row {dataset.row_id}={rid}: a stored value does not "
                        "decrypt with any key in FERNET_KEYS; list the new key first and every "
                        "key still in use after it (nothing was changed in this batch; run "
                        "again to resume)",
                        code="wrong_key",
                    ) from None
                if new is not None:
                    changes.append((rid, *new))
            if changes:
                columns = [f"{c.hash_column}" for c in dataset.sensitive] if blind_key else tokens
                execute_values(
                    cur,
                    sql.SQL(
                        "UPDATE {t} SET {sets} FROM (VALUES %s) AS v({id}, {names}) WHERE {t}.{id} = v.{id}"
                    )
                    .format(
                        t=table,
                        id=row_id,
                        sets=sql.SQL(", ").join(
                            sql.SQL("{c} = v.{c}").format(c=sql.Identifier(c)) for c in columns
                        ),
                        names=sql.SQL(", ").join(map(sql.Identifier, columns)),
                    )
                    .as_string(cur),
                    changes,
                    template=_template(len(columns), bool(blind_key)),
                )
            last = int(rows[-1][0])
            report.scanned += len(rows)
            report.rotated += len(changes)
            report.batches += 1
            report.left = max(0, report.total - report.scanned)
            _save(cur, dataset.name, mark, last, done=False)
        conn.commit()  # one short transaction per batch: no long locks
        if progress is not None:
            progress(report)


def _count_after(conn: Any, table: sql.Identifier, row_id: sql.Identifier, last: int) -> int:
    with conn.cursor() as cur:
        cur.execute(sql.SQL("SELECT count(*) FROM {} WHERE {} > %s").format(table, row_id), (last,))
        count = int(cur.fetchone()[0])
    conn.commit()
    return count


def _new_values(protector: Protector, values: list[Any], blind_key: bytes | None) -> list[Any] | None:
    if blind_key is not None:
        return [None if v is None else blind_index(blind_key, protector.decrypt(v)) for v in values]
    if all(v is None or protector.is_current(v) for v in values):
        return None
    return [None if v is None else protector.rotate(v) for v in values]


def _template(n: int, binary: bool) -> str:
    cast = "::bytea" if binary else "::text"
    return "(%s, " + ", ".join(f"%s{cast}" for _ in range(n)) + ")"


def _save(cur: Any, dataset: str, mark: str, last: int, *, done: bool) -> None:
    cur.execute(
        sql.SQL(
            "INSERT INTO {} (dataset, mark, last_row_id, done) VALUES (%s, %s, %s, %s)"
            " ON CONFLICT (dataset) DO UPDATE SET mark = EXCLUDED.mark,"
            " last_row_id = EXCLUDED.last_row_id, done = EXCLUDED.done, updated_at = now()"
        ).format(sql.Identifier(PROGRESS_TABLE)),
        (dataset, mark, last, done),
    )
