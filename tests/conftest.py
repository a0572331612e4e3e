"""Shared fixtures. Integration tests get a real Azurite and a real PostgreSQL that this
session starts and stops itself; a service that cannot start is a test failure, never a
skip."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from sales_etl import migrate
from sales_etl.settings import Settings, load_settings, project_root
from sales_etl_dev import devstack, hostcall


@pytest.fixture(scope="session")
def stack() -> Iterator[devstack.StackState]:
    base = project_root() / ".devstack"
    base.mkdir(parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="test-", dir=base))
    home.chmod(0o755)  # the PostgreSQL server runs as another user and must reach it
    state = devstack.up(home)
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
        devstack.down(home)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def settings(stack: devstack.StackState) -> Settings:
    return load_settings(stack.env())
