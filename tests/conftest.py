"""Shared fixtures. Integration tests get a real Azurite and a real PostgreSQL that this
session starts and stops itself; a service that cannot start is a test failure, never a
skip."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sales_etl.config.settings import Settings, load_settings, project_root
from sales_etl.db import migrate
from sales_etl_dev import devstack, hostcall


@contextlib.contextmanager
def temp_stack(prefix: str, **options: Any) -> Iterator[devstack.StackState]:
    """A local stack (devstack.up with ``options``) in a fresh folder under .devstack/,
    stopped and removed afterwards."""
    base = project_root() / ".devstack"
    base.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=base))
    home.chmod(0o755)  # the PostgreSQL server (and PgBouncer) run as another user and must reach it
    state = devstack.up(home, **options)
    try:
        yield state
    finally:
        devstack.down(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def stack() -> Iterator[devstack.StackState]:
    with temp_stack("test-") as state:
        saved = dict(os.environ)
        # What the host gives the worker process: the app settings, as environment variables.
        # The genuine worker (hostcall.worker()) starts on first use, with these in place.
        hostcall.provide_app_settings(state.env())
        try:
            migrate.migrate(load_settings(state.env()).require_admin_database())
            yield state
        finally:
            if hostcall.worker.cache_info().currsize:
                hostcall.worker().stop()
                hostcall.worker.cache_clear()
            os.environ.clear()
            os.environ.update(saved)


@pytest.fixture(scope="session")
def settings(stack: devstack.StackState) -> Settings:
    return load_settings(stack.env())
