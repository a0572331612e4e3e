"""What every ``sales-etl`` command shares: the local stack it found (once per command),
the settings it runs with (the environment, else the running local stack's), and its
progress bar. No command is defined here (``files``, ``runs`` and ``admin`` define them)."""

from __future__ import annotations

import sys
from typing import Any

import click

from sales_etl.cli.hints import Stack, local_stack
from sales_etl.config.settings import Settings, load_settings
from sales_etl.storage import preflight


def stack() -> Stack:
    """The local stack as this command found it (looked up once per command)."""
    meta = click.get_current_context().meta
    if "sales_etl.stack" not in meta:
        meta["sales_etl.stack"] = local_stack()
    return meta["sales_etl.stack"]


def settings() -> Settings:
    return load_settings(fallback=stack().env)


def uses_local_stack(settings: Settings) -> bool:
    """True when the database this command talks to is the running local stack's."""
    env = stack().env
    db = settings.database
    return (
        env is not None
        and db is not None
        and db.host == env["POSTGRES_HOST"]
        and str(db.port) == env["POSTGRES_PORT"]
    )


def storage_ready(settings: Settings) -> None:
    preflight.check_storage(settings.require_storage())


def progress(total: int | None, desc: str) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    bar = tqdm(total=total, unit=" rows", desc=desc, leave=False, file=sys.stderr)
    bar.refresh()  # shown at once, not only after the first chunk
    return bar
