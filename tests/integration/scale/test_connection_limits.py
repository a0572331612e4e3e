"""More invocations at once than the server has connections: nothing is lost or doubled.

32 processes (as 32 Functions instances would), each loading its own file, pairs of files
sharing rows, against a server with max_connections = 20 (17 slots for the loader role):

* directly, the invocations that find no free slot fail with "too many connections"
  (53300), classified transient: their blobs wait in failed/, the sweep sends them back,
  and in the end every file is loaded exactly once;
* through PgBouncer in transaction mode with a pool of 8, the invocations queue for a
  server connection instead: every file loads exactly once with no failure at all.

Each process holds its transaction open (claim and ledger row in) until the test has
seen the limit reached, so the limit is hit every time, not by luck of timing.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.flow import pipeline, retry
from sales_etl.stages.names import unquote_meta
from sales_etl.storage import container as storage
from sales_etl_dev import devstack

from ..conftest import names, query
from .conftest import MAX_CONNECTIONS, POOL_SIZE, RESERVED
from .workers import Burst, assert_loaded_once, burst, overlapping_files

pytestmark = pytest.mark.slow

INVOCATIONS = 32
GUARD = 120  # seconds: a hang guard for the test, not a performance assertion


def _wait_for(predicate: object, what: str, b: Burst) -> None:
    deadline = time.monotonic() + GUARD
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting: {what}; held {len(b.held)}, ended {b.ended}")


def test_direct_over_the_limit_every_file_loads_once_after_the_sweep(
    limited: devstack.StackState, direct_settings: Settings, limited_cc: ContainerClient, tmp_path: Path
) -> None:
    files = overlapping_files(direct_settings, limited_cc, tmp_path, INVOCATIONS)
    env = {**limited.env(), "CHUNK_SIZE": "100"}
    slots = MAX_CONNECTIONS - RESERVED
    with burst(env, files.blobs, hold=True) as b:

        def settled() -> bool:
            b.poll()
            return len(b.held) + len(b.ended) >= INVOCATIONS

        _wait_for(settled, "every invocation holding a connection or finished", b)
        # Every slot is taken by a held load; everyone else was refused and gave up.
        assert len(b.held) == slots
        assert len(b.ended) == INVOCATIONS - slots
    refused = names(limited_cc, f"{storage.FAILED}/")
    assert len(refused) == INVOCATIONS - slots
    for name in refused:
        meta = limited_cc.get_blob_client(name).get_blob_properties().metadata
        assert (meta["kind"], meta["reason_code"]) == ("transient", "too_many_connections")
        assert "53300" in unquote_meta(meta["reason"])
    # The sweep sends them back; they run again, all at once, until none is left.
    for _ in range(5):
        report = retry.sweep(direct_settings, now=storage.now_utc() + timedelta(days=1))
        if not report.retried:
            break
        with burst(env, report.retried) as b:
            pass
    assert_loaded_once(direct_settings, limited_cc, files)
    # A refused attempt has no slot to record itself in (when one is recorded after all,
    # it names the limit); nothing else failed.
    assert {
        r
        for (r,) in query(
            direct_settings, "SELECT DISTINCT reason_code FROM etl_runs WHERE status = 'failed'"
        )
    } <= {"too_many_connections"}


def _pgbouncer_waiting(stack: devstack.StackState, settings: Settings) -> int:
    """Clients queued for a server connection, from PgBouncer's admin console."""
    db = settings.require_admin_database()
    kwargs = {**db.connect_kwargs(), "dbname": "pgbouncer", "port": stack.pgbouncer_port}
    conn = psycopg2.connect(**kwargs)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW POOLS")
            cols = [c.name for c in cur.description]
            return sum(int(dict(zip(cols, row, strict=True))["cl_waiting"]) for row in cur.fetchall())
    finally:
        conn.close()


def test_pooled_more_invocations_than_the_pool_every_file_loads_once_without_failure(
    pooled_stack: devstack.StackState, direct_settings: Settings, limited_cc: ContainerClient, tmp_path: Path
) -> None:
    files = overlapping_files(direct_settings, limited_cc, tmp_path, INVOCATIONS)
    env = {**pooled_stack.env(pooled=True), "CHUNK_SIZE": "100"}
    with burst(env, files.blobs, hold=True) as b:

        def pool_full() -> bool:
            b.poll()
            return (
                len(b.held) == POOL_SIZE
                and _pgbouncer_waiting(pooled_stack, direct_settings) == INVOCATIONS - POOL_SIZE
            )

        # The pool's 8 server connections are held by 8 loads; the other 24 wait in
        # PgBouncer's queue (connected as clients, no server connection yet).
        _wait_for(pool_full, "8 loads holding the pool and 24 queued behind it", b)
        assert b.ended == {}
    assert {outcome for outcome, _ in b.ended.values()} == {"returned"}
    assert query(direct_settings, "SELECT status, count(*) FROM etl_runs GROUP BY status") == [
        ("loaded", INVOCATIONS + 1)
    ]  # and the history file
    assert_loaded_once(direct_settings, limited_cc, files)


def test_a_failed_attempt_is_recorded_when_its_own_connection_took_the_last_slot(
    limited: devstack.StackState, direct_settings: Settings, limited_cc: ContainerClient, tmp_path: Path
) -> None:
    """An attempt that fails records itself in the ledger on a connection of its own: it
    closes the load's connection first, so that it needs one slot, not two, when the
    server is full (every other slot taken)."""
    db = direct_settings.require_database()
    others = []
    try:
        while True:  # every loader slot but one taken by someone else
            try:
                others.append(psycopg2.connect(**db.connect_kwargs()))
            except psycopg2.OperationalError:
                break
        others.pop().close()
        (tmp_path / "bad.csv").write_text("not,a,sales,header\n1,2,3,4\n")
        name = storage.upload(limited_cc, tmp_path / "bad.csv", dataset="sales")
        rec = pipeline.process_blob(limited_cc.get_blob_client(name), direct_settings)
        assert rec.status == "failed"
        assert rec.reason_code != "too_many_connections"
    finally:
        for conn in others:
            conn.close()
    assert query(direct_settings, "SELECT blob_path, status, reason_code FROM etl_runs") == [
        (name, "failed", rec.reason_code)
    ]
    [failed] = names(limited_cc, f"{storage.FAILED}/")
    meta = limited_cc.get_blob_client(failed).get_blob_properties().metadata
    assert (meta["kind"], meta["reason_code"]) == ("data", rec.reason_code)
    assert names(limited_cc, f"{storage.INCOMING}/") == []
    assert query(direct_settings, "SELECT count(*) FROM sales") == [(0,)]
