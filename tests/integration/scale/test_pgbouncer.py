"""Everything the pipeline does, through PgBouncer in transaction pooling mode (TLS on
both sides, no startup parameter ignored: set up like Azure's built-in one on port 6432).

Transaction pooling hands each transaction whichever server connection is free, so
nothing may rely on session state: the claim is a transaction-level advisory lock, the
staging table is dropped at commit, savepoints and the key look-up live inside the load's
transaction, the ledger and key rotation commit per transaction. Migrations hold a
session lock across transactions: they refuse the pooler and name the port to use.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg2
import pytest
from azure.storage.blob import ContainerClient
from click.testing import CliRunner
from cryptography.fernet import Fernet

from sales_etl.cli import doctor
from sales_etl.cli.commands import main
from sales_etl.config.settings import Settings, load_settings
from sales_etl.core.errors import ConfigError, Skipped
from sales_etl.datasets.reader import get_dataset
from sales_etl.db import ledger, load, migrate, rotate
from sales_etl.db.connection import pooler
from sales_etl.flow import attempt, pipeline
from sales_etl.stages.protect import Protector
from sales_etl.storage import blobs
from sales_etl.storage import container as storage
from sales_etl_dev import devstack
from sales_etl_dev.generate import inject_bad_rows, make_frame, write_csv

from ..conftest import names, query
from .conftest import MAX_CONNECTIONS, POOL_SIZE, RESERVED

pytestmark = pytest.mark.slow


def _advisory_locks(settings: Settings) -> int:
    return int(query(settings, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")[0][0])


def _pgbouncer_admin(stack: devstack.StackState, settings: Settings, command: str) -> None:
    db = settings.require_admin_database()
    conn = psycopg2.connect(**{**db.connect_kwargs(), "dbname": "pgbouncer", "port": stack.pgbouncer_port})
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(command)
    finally:
        conn.close()


@contextlib.contextmanager
def pool_shrunk(stack: devstack.StackState, settings: Settings, size: int) -> Iterator[None]:
    """PgBouncer's pool shrunk to ``size`` server connections, then put back."""
    _pgbouncer_admin(stack, settings, f"SET default_pool_size = {size}")
    try:
        yield
    finally:
        _pgbouncer_admin(stack, settings, f"SET default_pool_size = {POOL_SIZE}")


@pytest.fixture
def pool_of_one(pooled_stack: devstack.StackState, direct_settings: Settings) -> Iterator[None]:
    """PgBouncer's pool shrunk to a single server connection for the test."""
    with pool_shrunk(pooled_stack, direct_settings, 1):
        yield


def test_a_file_with_rejects_collisions_and_in_file_duplicates_loads_through_a_pool_of_one(
    pooled_stack: devstack.StackState,
    pooled_settings: Settings,
    direct_settings: Settings,
    limited_cc: ContainerClient,
    tmp_path: Path,
    pool_of_one: None,
) -> None:
    """One pooled server connection is enough for a whole file: the claim, the COPY under
    savepoints, the staging table, the key look-up after the collision, the merge and the
    ledger all run in the load's one transaction (a second connection would wait for the
    first to finish: forever)."""
    head = make_frame(100, seed=77)
    bad = inject_bad_rows(head, 5, seed=77)
    tail = make_frame(200, seed=78)
    write_csv(tail.iloc[50:100], tmp_path / "history.csv")
    history = storage.upload(limited_cc, tmp_path / "history.csv", dataset="sales")
    assert pipeline.process_blob(limited_cc.get_blob_client(history), pooled_settings).status == "loaded"
    # chunks of 100: chunk 1 has the bad rows, chunk 2 meets the 50 stored rows (savepoint
    # rolled back, staged), chunk 3 is looked up first; the last line repeats line 252.
    write_csv(pd.concat([head, tail, tail.iloc[[150]]]), tmp_path / "big.csv")
    name = storage.upload(limited_cc, tmp_path / "big.csv", dataset="sales")
    rec = pipeline.process_blob(limited_cc.get_blob_client(name), pooled_settings)
    assert (rec.status, rec.rows_read, rec.rows_loaded, rec.rows_duplicate, rec.rows_rejected) == (
        "loaded",
        301,
        245,
        50,
        6,
    )
    assert query(direct_settings, "SELECT count(*), count(DISTINCT transaction_id) FROM sales") == [
        (295, 295)
    ]
    runs = query(direct_settings, "SELECT blob_path, status, rows_loaded FROM etl_runs ORDER BY run_id")
    assert runs == [(history, "loaded", 50), (name, "loaded", 245)]
    rejected = names(limited_cc, f"{storage.REJECTED}/")
    assert len(rejected) == 1
    text = limited_cc.get_blob_client(rejected[0]).download_blob().readall().decode()
    assert "duplicate_in_file" in text and len(text.strip().splitlines()) == 1 + 6
    for line in bad:
        assert f"\n{line}," in text or text.startswith(f"{line},")
    assert [n.rsplit("/", 1)[1] for n in names(limited_cc, f"{storage.PROCESSED}/")] == [
        "big.csv",
        "history.csv",
    ]
    assert names(limited_cc, f"{storage.INCOMING}/") == []
    assert names(limited_cc, f"{storage.FAILED}/") == []
    # Nothing outlives the transaction on the pooled server connections.
    assert _advisory_locks(direct_settings) == 0
    servers = query(direct_settings, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'sales_loader'")[
        0
    ][0]
    assert servers <= 1


@pytest.fixture
def held_after_claim(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, threading.Event]]:
    """The first load to start its Loader says so, then waits (claim and ledger row in)."""
    holding, release = threading.Event(), threading.Event()
    original = load.Loader.__init__

    def hooked(self: load.Loader, *args: Any, **kwargs: Any) -> None:
        if not holding.is_set():
            holding.set()
            release.wait(60)
        original(self, *args, **kwargs)

    monkeypatch.setattr(load.Loader, "__init__", hooked)
    yield holding, release
    release.set()


def test_two_deliveries_of_one_blob_through_the_pooler_claim_once(
    pooled_stack: devstack.StackState,
    pooled_settings: Settings,
    direct_settings: Settings,
    limited_cc: ContainerClient,
    tmp_path: Path,
    held_after_claim: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holding, release = held_after_claim
    write_csv(make_frame(150, seed=90), tmp_path / "twice.csv")
    name = storage.upload(limited_cc, tmp_path / "twice.csv", dataset="sales")
    blob = limited_cc.get_blob_client(name)
    props = blob.get_blob_properties()
    source = attempt.Source(
        name=name,
        dataset=get_dataset("sales"),
        etag=props.etag,
        trigger="blob",
        opener=lambda: blobs.open_blob(blob, props.etag, props.size),
    )
    results: list[Any] = []
    first = threading.Thread(
        target=lambda: results.append(attempt.load_source(pooled_settings, source, lambda data: ""))
    )
    first.start()
    assert holding.wait(60)
    # A second delivery, on another pooled server connection, finds the claim taken and
    # waits for it; when the wait runs out it gives up (the host retries the invocation).
    monkeypatch.setattr(ledger, "CLAIM_WAIT_SECONDS", 0.5)
    with pytest.raises(Skipped) as skipped:
        attempt.load_source(pooled_settings, source, lambda data: "")
    assert skipped.value.code == "in_progress"
    # A third one waits long enough: once the first commits, it finds the version loaded.
    monkeypatch.setattr(ledger, "CLAIM_WAIT_SECONDS", 60.0)
    waiting = threading.Thread(
        target=lambda: results.append(attempt.load_source(pooled_settings, source, lambda data: ""))
    )
    waiting.start()
    release.set()
    first.join(60)
    waiting.join(60)
    assert [(r.status, r.reason_code) for r in results] == [("loaded", None), ("skipped", "already_loaded")]
    assert _advisory_locks(direct_settings) == 0  # the claim ended with each transaction
    # (the loaded run took its id first: it was inserted inside the held transaction)
    assert query(direct_settings, "SELECT status, reason_code FROM etl_runs ORDER BY run_id") == [
        ("loaded", None),
        ("skipped", "in_progress"),
        ("skipped", "already_loaded"),
    ]
    assert query(direct_settings, "SELECT count(*) FROM sales") == [(150,)]


def test_migrate_refuses_the_pooler_clearly_and_runs_on_the_direct_port(
    pooled_stack: devstack.StackState, pooled_settings: Settings, direct_settings: Settings
) -> None:
    before = query(direct_settings, "SELECT version, checksum FROM schema_migrations")
    with pytest.raises(ConfigError, match=r"needs a direct connection.*POSTGRES_PORT.*5432"):
        migrate.migrate(pooled_settings.require_admin_database())
    result = CliRunner().invoke(main, ["migrate"], env=pooled_stack.env(pooled=True))
    assert result.exit_code != 0
    assert "direct connection" in result.output and "6432" in result.output
    assert migrate.migrate(direct_settings.require_admin_database()) == []
    assert query(direct_settings, "SELECT version, checksum FROM schema_migrations") == before
    assert _advisory_locks(direct_settings) == 0


@contextlib.contextmanager
def forwarded(port: int) -> Iterator[int]:
    """A plain TCP port forward to ``port`` (as Docker or an SSH tunnel would do)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()
    sockets: list[socket.socket] = [listener]
    threads: list[threading.Thread] = []

    def pipe(a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := a.recv(65536):
                b.sendall(data)
        with contextlib.suppress(OSError):
            b.shutdown(socket.SHUT_WR)

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            server = socket.create_connection(("127.0.0.1", port))
            sockets.extend((client, server))
            for a, b in ((client, server), (server, client)):
                threads.append(threading.Thread(target=pipe, args=(a, b), daemon=True))
                threads[-1].start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield int(listener.getsockname()[1])
    finally:
        stop.set()
        acceptor.join(5)
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        for t in threads:
            t.join(5)


def test_pooler_detection_is_not_fooled_by_a_port_forward(
    pooled_stack: devstack.StackState, pooled_settings: Settings, direct_settings: Settings
) -> None:
    assert pooler(direct_settings.require_database()) is None
    found = pooler(pooled_settings.require_database())
    assert found is not None and "options" in found
    with forwarded(pooled_stack.pg_port) as port:
        via_forward = load_settings({**pooled_stack.env(), "POSTGRES_PORT": str(port)})
        assert pooler(via_forward.require_database()) is None
        assert migrate.migrate(via_forward.require_admin_database()) == []
    # The app itself sends no startup parameter PgBouncer would refuse (it refuses them all).
    assert "options" not in pooled_settings.require_database().connect_kwargs()
    kwargs = {**pooled_settings.require_database().connect_kwargs(), "options": "-c statement_timeout=5s"}
    with pytest.raises(psycopg2.OperationalError, match="unsupported startup parameter"):
        psycopg2.connect(**kwargs)


def test_key_rotation_runs_through_the_pooler(
    pooled_stack: devstack.StackState,
    pooled_settings: Settings,
    direct_settings: Settings,
    limited_cc: ContainerClient,
    tmp_path: Path,
) -> None:
    write_csv(make_frame(250, seed=91), tmp_path / "keys.csv")
    name = storage.upload(limited_cc, tmp_path / "keys.csv", dataset="sales")
    assert pipeline.process_blob(limited_cc.get_blob_client(name), pooled_settings).rows_loaded == 250
    new_key = Fernet.generate_key().decode()
    rotated_env = {
        **pooled_stack.env(pooled=True),
        "CHUNK_SIZE": "100",
        "FERNET_KEYS": f"{new_key},{pooled_stack.fernet_key}",
    }
    settings = load_settings(rotated_env)
    report = rotate.rotate(settings, [get_dataset("sales")], batch=60)
    assert report.rotated == 250 and report.datasets[0].batches == 5
    fernet, blind = settings.require_keys()
    newest = Protector(fernet[:1], blind)
    tokens = query(direct_settings, "SELECT customer_id FROM sales")
    assert len(tokens) == 250 and all(newest.is_current(t) for (t,) in tokens)
    assert query(direct_settings, "SELECT done FROM etl_key_rotation") == [(True,)]


def test_doctor_reports_the_limit_the_connections_in_use_and_the_pooler(
    pooled_stack: devstack.StackState,
) -> None:
    pooled = {c.name: c for c in doctor.run(pooled_stack.env(pooled=True))}
    direct = {c.name: c for c in doctor.run(pooled_stack.env())}
    for checks in (pooled, direct):
        assert checks["connections"].ok
        assert "max_connections 20" in checks["connections"].detail
        assert " in use of " in checks["connections"].detail
    assert "PgBouncer" in pooled["pooler"].detail and "migrate" in pooled["pooler"].detail
    assert "direct to PostgreSQL" in direct["pooler"].detail
    assert pooled["TLS"].ok and "encrypted" in pooled["TLS"].detail


def test_doctor_fails_when_the_server_is_nearly_full(
    pooled_stack: devstack.StackState, direct_settings: Settings
) -> None:
    # Take every slot of the loader's but one, for doctor (PgBouncer may keep idle server
    # connections: take slots until the server refuses, then give one back).
    held = []
    try:
        for _ in range(MAX_CONNECTIONS - RESERVED):
            try:
                held.append(psycopg2.connect(**direct_settings.require_database().connect_kwargs()))
            except psycopg2.OperationalError as exc:
                assert "reserved" in str(exc) or "too many" in str(exc)
                break
        held.pop().close()
        check = {c.name: c for c in doctor.run(pooled_stack.env())}["connections"]
        assert not check.ok and "PgBouncer" in check.fix and "max_connections" in check.fix
    finally:
        for conn in held:
            conn.close()


@pytest.fixture
def pool_of_two(pooled_stack: devstack.StackState, direct_settings: Settings) -> Iterator[None]:
    """PgBouncer's pool shrunk to two server connections for the test."""
    with pool_shrunk(pooled_stack, direct_settings, 2):
        yield


def test_a_delivery_waiting_for_the_claim_does_not_hold_a_pooled_server_connection(
    pooled_stack: devstack.StackState,
    pooled_settings: Settings,
    direct_settings: Settings,
    limited_cc: ContainerClient,
    tmp_path: Path,
    pool_of_two: None,
    held_after_claim: tuple[threading.Event, threading.Event],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A second delivery of a file waits for the first one's claim between tries with no
    transaction open: through PgBouncer its server connection goes back to the pool, and
    another file loads meanwhile (a waiting claim that kept its transaction open would hold
    a pooled server connection for up to CLAIM_WAIT_SECONDS, idle in transaction)."""
    holding, release = held_after_claim
    waiting, go_on = threading.Event(), threading.Event()

    class _Clock:  # the waiter's first pause between tries lasts until the test says so
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            if not waiting.is_set():
                waiting.set()
                go_on.wait(60)
            else:
                time.sleep(seconds)

    monkeypatch.setattr(ledger, "time", _Clock)
    write_csv(make_frame(150, seed=91), tmp_path / "held.csv")
    write_csv(make_frame(120, seed=92), tmp_path / "other.csv")
    held = storage.upload(limited_cc, tmp_path / "held.csv", dataset="sales")
    other = storage.upload(limited_cc, tmp_path / "other.csv", dataset="sales")
    first = threading.Thread(
        target=pipeline.process_blob, args=(limited_cc.get_blob_client(held), pooled_settings)
    )
    first.start()
    assert holding.wait(60)
    second_result: list[Any] = []
    second = threading.Thread(
        target=lambda: second_result.append(
            pipeline.process_blob(limited_cc.get_blob_client(held), pooled_settings)
        )
    )
    second.start()
    try:
        assert waiting.wait(60)
        # One server connection is in a transaction (the held load); the waiter has none.
        assert query(
            direct_settings,
            "SELECT count(*) FROM pg_stat_activity WHERE usename = 'sales_loader' AND xact_start IS NOT NULL",
        ) == [(1,)]
        # So the pool's second server connection is free for another file.
        rec = pipeline.process_blob(limited_cc.get_blob_client(other), pooled_settings)
        assert (rec.status, rec.rows_loaded) == ("loaded", 120)
    finally:
        go_on.set()
        release.set()
        first.join(60)
        second.join(60)
    assert [(r.status, r.reason_code) for r in second_result] == [("skipped", "already_loaded")]
    assert query(direct_settings, "SELECT count(*) FROM sales") == [(270,)]
    assert sorted(query(direct_settings, "SELECT status, coalesce(reason_code, '') FROM etl_runs")) == [
        ("loaded", ""),
        ("loaded", ""),
        ("skipped", "already_loaded"),
    ]
    assert [n.rsplit("/", 1)[1] for n in names(limited_cc, f"{storage.PROCESSED}/")] == [
        "held.csv",
        "other.csv",
    ]
    assert names(limited_cc, f"{storage.INCOMING}/") == []
    assert names(limited_cc, f"{storage.FAILED}/") == []
    assert _advisory_locks(direct_settings) == 0
