"""A second local stack for the scale-out tests: a PostgreSQL with a small
``max_connections`` (20, so 17 for non-superusers) and PgBouncer in transaction pooling
mode in front of it with a pool of 8, TLS on both sides. Without PgBouncer installed the
pooled tests fail in CI and skip on a user's machine, saying what to install."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings, load_settings
from sales_etl.storage import container as storage
from sales_etl_dev import devstack

from ...conftest import temp_stack
from ..conftest import names, query

MAX_CONNECTIONS = 20
RESERVED = 3  # superuser_reserved_connections: the tests' own (superuser) queries use these
POOL_SIZE = 8


@pytest.fixture(scope="session")
def limited() -> Iterator[devstack.StackState]:
    """The stack with a connection-limited server (and PgBouncer when installed)."""
    with temp_stack(
        "test-scale-", max_connections=MAX_CONNECTIONS, pool_size=POOL_SIZE, query_wait_timeout=60
    ) as state:
        yield state


@pytest.fixture(scope="session")
def pooled_stack(limited: devstack.StackState) -> devstack.StackState:
    if limited.pgbouncer_port is None:
        why = (
            "PgBouncer is not installed"
            if devstack.find_pgbouncer() is None
            else "PgBouncer needs the TLS PostgreSQL build (Debian's postgresql-15)"
        )
        if os.environ.get("CI"):
            pytest.fail(f"CI runs the pooled tests: {why} (make pgbouncer-tool installs it)")
        pytest.skip(f"{why}: apt-get install pgbouncer (or make pgbouncer-tool as root)")
    return limited


@pytest.fixture
def direct_settings(limited: devstack.StackState) -> Settings:
    return load_settings({**limited.env(), "CHUNK_SIZE": "100"})


@pytest.fixture
def pooled_settings(pooled_stack: devstack.StackState) -> Settings:
    return load_settings({**pooled_stack.env(pooled=True), "CHUNK_SIZE": "100"})


@pytest.fixture
def limited_cc(direct_settings: Settings) -> Iterator[ContainerClient]:
    """The limited stack's container, emptied with its tables before each test."""
    storage.init_storage(direct_settings)
    cc = storage.container_client(direct_settings)
    query(
        direct_settings,
        "TRUNCATE sales, etl_runs, customers, products, stores, suppliers,"
        " etl_key_rotation RESTART IDENTITY CASCADE",
    )
    for name in names(cc):
        cc.delete_blob(name)
    # Every slot free: end the loader's sessions (PgBouncer's idle server connections too,
    # which it then replaces on demand), so each test counts the server's slots from zero.
    query(
        direct_settings,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'sales_loader'",
    )
    deadline = time.monotonic() + 30
    while query(direct_settings, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'sales_loader'") != [
        (0,)
    ]:
        assert time.monotonic() < deadline, "the loader's sessions did not end"
        time.sleep(0.05)
    yield cc
