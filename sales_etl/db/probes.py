"""What ``sales-etl doctor`` asks the database: its version, its connection limit and use,
this client's TLS, and the newest tokens of a sensitive column (to check the keys). Each
probe opens and closes its own connection; identifiers are quoted by the driver."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from psycopg2 import sql

from sales_etl.config.settings import DatabaseSettings
from sales_etl.db.connection import connect
from sales_etl.stages.spec import Column, Dataset


def _with_cursor(db: DatabaseSettings, fn: Callable[[Any], Any]) -> Any:
    conn = connect(db)
    try:
        with conn.cursor() as cur:
            return fn(cur)
    finally:
        conn.close()


def server_version(db: DatabaseSettings) -> str:
    def version(cur: Any) -> str:
        cur.execute("SHOW server_version")
        return str(cur.fetchone()[0])

    return str(_with_cursor(db, version))


def connection_usage(db: DatabaseSettings) -> tuple[int, int, int]:
    """(max_connections, superuser_reserved_connections, client backends in use)."""

    def usage(cur: Any) -> tuple[int, int, int]:
        cur.execute(
            "SELECT current_setting('max_connections')::int,"
            " current_setting('superuser_reserved_connections')::int,"
            " (SELECT count(*) FROM pg_stat_activity"
            "  WHERE backend_type = 'client backend')::int"
        )
        limit, reserved, in_use = cur.fetchone()
        return int(limit), int(reserved), int(in_use)

    result: tuple[int, int, int] = _with_cursor(db, usage)
    return result


def client_tls(db: DatabaseSettings) -> tuple[bool, str | None]:
    """Whether this client's own hop is encrypted, and its protocol, as libpq sees it
    (through a pooler, the server-side view of the session would describe the pooler's)."""

    def tls(cur: Any) -> tuple[bool, str | None]:
        return bool(cur.connection.info.ssl_in_use), cur.connection.info.ssl_attribute("protocol")

    result: tuple[bool, str | None] = _with_cursor(db, tls)
    return result


def newest_tokens(db: DatabaseSettings, dataset: Dataset, column: Column, limit: int = 20) -> list[Any]:
    """(token, blind index) of the newest ``limit`` rows of a sensitive column; none when
    the dataset's table does not exist (yet)."""
    query = sql.SQL("SELECT {c}, {h} FROM {t} ORDER BY {id} DESC LIMIT %s").format(
        c=sql.Identifier(column.sql[0]),
        h=sql.Identifier(column.hash_column),
        t=sql.Identifier(dataset.table),
        id=sql.Identifier(dataset.row_id),
    )

    def fetch(cur: Any) -> list[Any]:
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (dataset.table,))
        if not cur.fetchone()[0]:
            return []
        cur.execute(query, (limit,))
        return list(cur.fetchall())

    rows: list[Any] = _with_cursor(db, fetch)
    return rows
