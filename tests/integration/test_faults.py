"""Faults injected into the real local stack: the table always ends with exactly the valid
rows once, every row read is accounted for, and no blob is ever lost.

Hooks on the package only synchronise the test with the pipeline ("the first chunk is in,
stop the database now"); every failure itself is real: a stopped server, a killed process.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.flow import pipeline, retry
from sales_etl.storage import blobs
from sales_etl.storage import container as storage
from sales_etl_dev import devstack, hostcall
from sales_etl_dev.generate import generate

from .conftest import Pause, RangePause, names, query
from .interleave import WORKER, run_in_thread, start_python

pytestmark = pytest.mark.slow


def where(cc: ContainerClient, rel: str) -> list[str]:
    """Every place a file of that name is: exactly one, always (no blob lost or doubled)."""
    return [n for n in names(cc) if n.endswith("/" + rel) and not n.startswith("rejected/")]


def assert_exact(settings: Settings, expected: int) -> None:
    assert query(settings, "SELECT count(*), count(DISTINCT transaction_id) FROM sales") == [
        (expected, expected)
    ]
    for read, loaded, dupes, rejected in query(
        settings,
        "SELECT rows_read, rows_loaded, rows_duplicate, rows_rejected FROM etl_runs WHERE status = 'loaded'",
    ):
        assert read == loaded + dupes + rejected


def sweep_until_incoming(settings: Settings, cc: ContainerClient) -> None:
    report = retry.sweep(settings, now=storage.now_utc() + timedelta(days=1))
    assert report.retried, "the sweep should have sent the blob back to incoming/"


def test_database_stopped_mid_load(
    stack: devstack.StackState,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    pause_after_first_chunk: Pause,
) -> None:
    loaded, resume = pause_after_first_chunk
    small = Settings(**{**settings.__dict__, "chunk_rows": 2000})
    g = generate(tmp_path / "pgdown.csv", 20_000, seed=51)
    blob = storage.upload(cc, g.path)
    thread, out = run_in_thread(lambda: pipeline.process_blob(cc.get_blob_client(blob), small))
    assert loaded.wait(60)
    devstack.stop_postgres(Path(stack.home), Path(stack.pg_bin), mode="immediate")
    resume.set()
    thread.join(120)
    [rec] = out
    assert rec.status == "failed" and rec.reason_code.startswith("db_")
    devstack.restart_postgres(stack)
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]  # nothing of the file
    assert where(cc, "pgdown.csv") == ["failed/sales/pgdown.csv"]
    meta = cc.get_blob_client("failed/sales/pgdown.csv").get_blob_properties().metadata
    assert meta["kind"] == "transient"
    sweep_until_incoming(settings, cc)
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert_exact(settings, 20_000)
    assert len(where(cc, "pgdown.csv")) == 1 and where(cc, "pgdown.csv")[0].startswith("processed/")


def test_storage_stopped_mid_download(
    stack: devstack.StackState,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pause_after_first_range: RangePause,
) -> None:
    fetched, resume, original = pause_after_first_range
    g = generate(tmp_path / "azdown.csv", 30_000, seed=52)
    blob = storage.upload(cc, g.path)
    thread, out = run_in_thread(lambda: hostcall.invoke_blob_trigger(settings.container, blob))
    try:
        assert fetched.wait(60)
        devstack.stop_pid(stack.azurite_pid)
        resume.set()
        thread.join(180)
    finally:
        devstack.restart_azurite(stack)
    [error] = out
    # Storage is down, so the blob cannot even be moved to failed/: the invocation fails
    # and the host retries it later. Nothing was loaded, nothing was moved.
    assert isinstance(error, Exception)
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    assert where(cc, "azdown.csv") == [blob]
    monkeypatch.setattr(blobs.RangeReader, "_fetch", original)
    hostcall.invoke_blob_trigger(settings.container, blob)  # the host's retry
    assert_exact(settings, 30_000)
    assert where(cc, "azdown.csv")[0].startswith("processed/")


def _worker(container: str, blob: str) -> subprocess.Popen[bytes]:
    return start_python(WORKER, container, blob)


def test_worker_killed_mid_file(settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path) -> None:
    g = generate(tmp_path / "killed.csv", 300_000, seed=53)
    blob = storage.upload(cc, g.path)
    proc = _worker(settings.container, blob)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # wait until its COPY is running, then kill it
        active = query(
            settings,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name"
            " = 'sales-etl' AND query LIKE 'COPY%%' AND state = 'active'",
        )
        if active[0][0] or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the worker finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 30  # the server notices the dead client and rolls back
    while (
        query(
            settings,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name"
            " = 'sales-etl' AND pid <> pg_backend_pid()",
        )[0][0]
        and time.monotonic() < deadline
    ):
        time.sleep(0.05)
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    assert where(cc, "killed.csv") == [blob]  # still in incoming/, for the next attempt
    hostcall.invoke_blob_trigger(settings.container, blob)  # no stale lock blocks it
    assert_exact(settings, 300_000)


def test_same_blob_delivered_eight_times_at_once(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    g = generate(tmp_path / "eight.csv", 20_000, seed=54)
    blob = storage.upload(cc, g.path)
    barrier = threading.Barrier(4)

    def deliver() -> None:
        barrier.wait()
        hostcall.invoke_blob_trigger(settings.container, blob)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    procs = [_worker(settings.container, blob) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for p in procs:
        assert p.wait(120) == 0
    assert_exact(settings, 20_000)
    runs = query(settings, "SELECT status, reason_code FROM etl_runs ORDER BY run_id")
    assert len(runs) == 8
    assert [r for r in runs if r[0] == "loaded"] == [("loaded", None)]
    assert {r[1] for r in runs if r[0] == "skipped"} <= {"in_progress", "gone", "already_loaded"}
    assert len(where(cc, "eight.csv")) == 1 and where(cc, "eight.csv")[0].startswith("processed/")


def test_blob_overwritten_while_processing(
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pause_after_first_range: RangePause,
) -> None:
    """Defined outcome: the version being read changes under the reader (If-Match fails),
    so that attempt loads nothing; the new version stays in incoming/ and is processed in
    its turn. Nothing is deleted that was not processed."""
    fetched, resume, original = pause_after_first_range
    v1 = generate(tmp_path / "v1.csv", 20_000, seed=55)
    v2 = generate(tmp_path / "v2.csv", 5_000, seed=56)
    blob = storage.upload(cc, v1.path, name="over.csv")
    thread, out = run_in_thread(lambda: pipeline.process_blob(cc.get_blob_client(blob), settings))
    assert fetched.wait(60)
    storage.upload(cc, v2.path, name="over.csv")
    resume.set()
    thread.join(120)
    [rec] = out
    assert rec.status == "failed" and rec.reason_code == "blob_changed"
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    assert where(cc, "over.csv") == [blob]  # the new version, untouched
    monkeypatch.setattr(blobs.RangeReader, "_fetch", original)
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert_exact(settings, 5_000)


def test_sweep_works_while_the_database_is_down(
    stack: devstack.StackState, settings: Settings, clean: None, cc: ContainerClient
) -> None:
    cc.get_blob_client("failed/sales/due.csv").upload_blob(
        b"x\n",
        metadata={
            "attempts": "1",
            "kind": "transient",
            "source_path": "incoming/sales/due.csv",
            "next_attempt_at": "2000-01-01T00:00:00+00:00",
        },
    )
    devstack.stop_postgres(Path(stack.home), Path(stack.pg_bin))
    try:
        report = retry.sweep(settings)
    finally:
        devstack.restart_postgres(stack)
    assert report.retried == ["incoming/sales/due.csv"]
    assert names(cc) == ["incoming/sales/due.csv"]


LOAD_WORKER = """
import sys
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl.app.triggers import settings
cc = storage.container_client(settings())
for name in sys.argv[2:]:
    try:
        hostcall.invoke_blob_trigger(sys.argv[1], name)
    except Exception as exc:  # the host would retry; the test's loop does
        print("retry later:", name, type(exc).__name__, file=sys.stderr)
"""


def test_fifty_overlapping_files_by_four_workers(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """50 files of 20,000 rows, 10% of each file's transactions also in the next file,
    loaded by 4 worker processes at once: each transaction lands once, every row counted."""
    import pandas as pd

    files, frames = [], []
    for i in range(50):
        g = generate(tmp_path / f"f{i:02d}.csv", 20_000, seed=1000 + i)
        frames.append(pd.read_csv(g.path, dtype=str, keep_default_na=False))
    for i in range(1, 50):  # the first 2,000 rows of file i repeat file i-1's last 2,000
        frames[i].iloc[:2000] = frames[i - 1].iloc[-2000:].to_numpy()
    for i, frame in enumerate(frames):
        path = tmp_path / f"f{i:02d}.csv"
        frame.to_csv(path, index=False, lineterminator="\n")
        files.append(storage.upload(cc, path, dataset="sales"))
    expected = len(pd.concat(frames)["transaction_id"].unique())
    for _ in range(5):  # deadlocks between overlapping files are transient: retried
        pending = names(cc, "incoming/")
        if not pending:
            break
        procs = [start_python(LOAD_WORKER, settings.container, *pending[k::4], quiet=False) for k in range(4)]
        for p in procs:
            assert p.wait(600) == 0
        if names(cc, "failed/"):
            retry.sweep(settings, now=storage.now_utc() + timedelta(days=1))
    assert names(cc, "incoming/") == [] and names(cc, "failed/") == []
    assert len(names(cc, "processed/")) == 50
    assert_exact(settings, expected)
    [(read, loaded, dupes, rejected)] = query(
        settings,
        "SELECT sum(rows_read), sum(rows_loaded), sum(rows_duplicate),"
        " sum(rows_rejected) FROM etl_runs WHERE status = 'loaded'",
    )
    assert (read, loaded, rejected) == (50 * 20_000, expected, 0)
    assert dupes == read - loaded
