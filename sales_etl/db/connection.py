"""The database adapter's connection: one place that opens PostgreSQL connections."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions

from sales_etl.config.settings import DatabaseSettings
from sales_etl.core.errors import classify


def connect(db: DatabaseSettings, *, autocommit: bool = False) -> Any:
    """Open a connection; failures become TransientError (no password in any message)."""
    try:
        conn = psycopg2.connect(
            **db.connect_kwargs(),
            # Notice a dead server within ~30 s instead of hanging on a half-open socket.
            keepalives=1,
            keepalives_idle=10,
            keepalives_interval=5,
            keepalives_count=3,
        )
    except psycopg2.Error as exc:
        raise classify(exc) from exc
    conn.autocommit = autocommit
    return conn


# A setting PgBouncer never sees through: sent as a startup `options` value, PostgreSQL
# applies it; PgBouncer refuses the connection ("unsupported startup parameter") unless told
# to ignore `options`, and then the value never reaches the server. Either way it shows.
_PROBE_SETTING, _PROBE_VALUE = "statement_timeout", "7354321"


def pooler(db: DatabaseSettings) -> str | None:
    """Say whether these settings reach PostgreSQL through a pooler such as PgBouncer (its
    transaction mode keeps no session state): a short description of the evidence, or
    None for a direct connection. Robust against port forwarding (Docker, SSH): only a
    pooler drops or refuses a startup parameter, a forwarded port passes it on."""
    kwargs = {**db.connect_kwargs(), "options": f"-c {_PROBE_SETTING}={_PROBE_VALUE}"}
    try:
        conn = psycopg2.connect(**kwargs)
    except psycopg2.OperationalError as exc:
        if "unsupported startup parameter" in str(exc):
            return "it refuses the startup parameter `options` (PgBouncer does)"
        raise classify(exc) from exc
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT current_setting(%s), inet_server_port()", (_PROBE_SETTING,))
            value, server_port = cur.fetchone()
    finally:
        conn.rollback()
        conn.close()
    if value.rstrip("ms") != _PROBE_VALUE:
        return (
            f"it dropped the startup parameter `options` (PgBouncer with "
            f"ignore_startup_parameters does); the server listens on port {server_port}"
        )
    return None
