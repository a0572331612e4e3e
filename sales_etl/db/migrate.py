"""The migration runner: plain SQL files ``migrations/V<n>__<description>.sql`` (Flyway's
naming), applied in order, each in its own transaction, under an advisory lock, recorded
with a checksum. A changed, already-applied migration is refused."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sales_etl.config.settings import DatabaseSettings, project_root
from sales_etl.core.errors import ConfigError
from sales_etl.db.connection import connect, pooler

MIGRATION_RE = re.compile(r"^V(\d+)__([A-Za-z0-9_]+)\.sql$")
LOCK_KEY = 7_352_001  # advisory lock id shared by every migrate run


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    path: Path
    checksum: str


def default_dir() -> Path:
    """The shipped migrations: ``migrations/`` of the checkout (or of the deployment zip)
    the package runs from, or of ``SALES_ETL_HOME``."""
    return project_root() / "migrations"


# A `sales-etl` built as a wheel (`pip install .`) carries the package, not the migrations
# beside it: without this, `migrate` applied nothing and said "up to date".
_NOT_SHIPPED = (
    "; a sales-etl installed from a wheel (`pip install .`) carries no "
    "migrations: install it from the checkout with `pip install -e .`, or set "
    "SALES_ETL_HOME to the checkout"
)


def discover(directory: Path) -> list[Migration]:
    """The migrations in ``directory``. A folder that is not there is an error, never
    "nothing to apply"; so is a shipped folder without any migration."""
    shipped = directory == default_dir()
    if not directory.is_dir():
        raise ConfigError(
            f"migrations folder not found: {directory}" + (_NOT_SHIPPED if shipped else ""),
            code="no_migrations",
        )
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        m = MIGRATION_RE.match(path.name)
        if not m:
            raise ConfigError(f"migration {path.name}: name must be V<n>__<description>.sql")
        version = int(m.group(1))
        if version in found:
            raise ConfigError(f"migration {path.name}: version {version} is used twice")
        checksum = hashlib.sha256(path.read_bytes()).hexdigest()
        found[version] = Migration(version, m.group(2).replace("_", " "), path, checksum)
    if shipped and not found:
        raise ConfigError(f"no migration in {directory}" + _NOT_SHIPPED, code="no_migrations")
    return [found[v] for v in sorted(found)]


def migrate(db: DatabaseSettings, directory: Path | None = None) -> list[Migration]:
    """Apply what is pending; return the migrations applied by this call."""
    migrations = discover(directory or default_dir())
    refuse_pooler(db)
    conn = connect(db, autocommit=True)
    applied_now: list[Migration] = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version integer PRIMARY KEY, description text NOT NULL,"
                " checksum text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT version, checksum FROM schema_migrations")
            applied = dict(cur.fetchall())
            flyway = _flyway_versions(cur)
        for m in migrations:
            if m.version in flyway and m.version not in applied:
                continue  # applied by Flyway (docker-compose, a pipeline): not again
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise ConfigError(
                        f"migration {m.path.name} was changed after it was applied "
                        "(checksum differs); add a new migration instead of editing it"
                    )
                continue
            conn.autocommit = False
            with conn.cursor() as cur:
                cur.execute(m.path.read_text(encoding="utf-8"))
                cur.execute(
                    "INSERT INTO schema_migrations (version, description, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.description, m.checksum),
                )
            conn.commit()
            conn.autocommit = True
            applied_now.append(m)
        return applied_now
    finally:
        conn.rollback() if not conn.autocommit else None
        conn.close()


def refuse_pooler(db: DatabaseSettings) -> None:
    """Migrations hold a session advisory lock across their transactions and run DDL: they
    need the server itself, not a transaction-pooling PgBouncer in front of it."""
    via = pooler(db)
    if via is not None:
        raise ConfigError(
            f"sales-etl migrate needs a direct connection to PostgreSQL, but "
            f"{db.host}:{db.port} is a connection pooler: {via}. Run it with POSTGRES_PORT "
            "set to the server's own port (5432 on Azure Database for PostgreSQL, not "
            "PgBouncer's 6432); the function app itself may use the pooler"
        )


def _flyway_versions(cur: Any) -> set[int]:
    """Versions Flyway applied to this database, if Flyway manages it too."""
    cur.execute("SELECT to_regclass('flyway_schema_history') IS NOT NULL")
    if not cur.fetchone()[0]:
        return set()
    cur.execute("SELECT version FROM flyway_schema_history WHERE success AND version IS NOT NULL")
    return {int(v) for (v,) in cur.fetchall() if str(v).isdigit()}


def pending(db: DatabaseSettings, directory: Path | None = None) -> list[Migration]:
    migrations = discover(directory or default_dir())
    conn = connect(db, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return migrations
            cur.execute("SELECT version FROM schema_migrations")
            done = {r[0] for r in cur.fetchall()} | _flyway_versions(cur)
        return [m for m in migrations if m.version not in done]
    finally:
        conn.close()
