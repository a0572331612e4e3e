"""The database adapter's connection: one place that opens PostgreSQL connections."""

from __future__ import annotations

from typing import Any

import psycopg2
import psycopg2.extensions

from .errors import classify
from .settings import DatabaseSettings


def connect(db: DatabaseSettings, *, autocommit: bool = False) -> Any:
    """Open a connection; failures become TransientError (no password in any message)."""
    try:
        conn = psycopg2.connect(
            **db.connect_kwargs(),
            # Notice a dead server within ~30 s instead of hanging on a half-open socket.
            keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
        )
    except psycopg2.Error as exc:
        raise classify(exc) from exc
    conn.autocommit = autocommit
    return conn
