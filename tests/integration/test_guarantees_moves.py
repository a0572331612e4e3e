"""No blob lost, no version skipped, no reject lost: attacks on the moves, the claim and
the rejects files, on the real Azurite and PostgreSQL.

Hooks on the package only make an interleaving happen every time ("both movers have
looked at the destination: now copy"; "the first range is in: wait"); every outcome is
asserted in the table, the ledger and the listing of every folder.
"""

from __future__ import annotations

import csv
import gzip
import io
import signal
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import get_dataset
from sales_etl.db import ledger
from sales_etl.db.connection import connect
from sales_etl.flow import pipeline, retry
from sales_etl.stages.names import unquote_meta
from sales_etl.storage import blobs, moves
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import generate

from .conftest import Pause, RangePause, names, query
from .interleave import WORKER, run_in_thread, run_python, run_threads, start_python

FOLDERS = ("incoming/", "processed/", "failed/", "deadletter/", "rejected/")


def listing(cc: ContainerClient) -> dict[str, list[str]]:
    return {folder: names(cc, folder) for folder in FOLDERS}


def content(cc: ContainerClient, name: str) -> bytes:
    return cc.download_blob(name, decompress=False).readall()


def valid_ids(path: Path, bad: dict[int, str]) -> set[str]:
    with path.open(newline="") as f:
        return {
            row["transaction_id"] for line, row in enumerate(csv.DictReader(f), start=2) if line not in bad
        }


def stored_ids(settings: Settings) -> list[str]:
    return [r[0] for r in query(settings, "SELECT transaction_id FROM sales")]


def in_dir(base: Path, sub: str) -> Path:
    (base / sub).mkdir()
    return base / sub


@pytest.fixture
def copies_meet(monkeypatch: pytest.MonkeyPatch) -> threading.Barrier:
    """Each mover's first copy into processed/ or failed/ waits until the other mover has
    reached its own: both have looked at the destination before either copies (the race
    that lost 13 of 40 pairs, made to happen every time)."""
    barrier = threading.Barrier(2, timeout=60)
    first = threading.local()
    original = BlobClient.start_copy_from_url

    def hooked(self: BlobClient, *args: Any, **kwargs: Any) -> Any:
        if self.blob_name.startswith(("processed/", "failed/")) and not getattr(first, "done", False):
            first.done = True
            barrier.wait()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(BlobClient, "start_copy_from_url", hooked)
    return barrier


# ----------------------------------------------------------------------------- collisions


def test_two_files_routed_to_one_processed_name_at_once(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, copies_meet: threading.Barrier
) -> None:
    """incoming/X.csv and incoming/sales/X.csv (different content) both go to
    processed/sales/<day>/X.csv, at the same moment: both must survive, each once."""
    a = generate(in_dir(tmp_path, "a") / "X.csv", 300, seed=901)
    b = generate(in_dir(tmp_path, "b") / "X.csv", 400, seed=902)
    blob_a = storage.upload(cc, a.path)  # incoming/X.csv
    blob_b = storage.upload(cc, b.path, dataset="sales")  # incoming/sales/X.csv
    assert storage.route(blob_a) == storage.route(blob_b)
    recs = run_threads(
        lambda: pipeline.process_blob(cc.get_blob_client(blob_a), settings),
        lambda: pipeline.process_blob(cc.get_blob_client(blob_b), settings),
    )
    assert [r.status for r in recs] == ["loaded", "loaded"]
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == [] and folders["rejected/"] == []
    assert len(folders["processed/"]) == 2
    assert sorted(content(cc, n) for n in folders["processed/"]) == sorted(
        [a.path.read_bytes(), b.path.read_bytes()]
    )
    for name in folders["processed/"]:
        assert name.startswith("processed/sales/") and name.split("/")[-1].startswith("X")
    assert sorted(stored_ids(settings)) == sorted(valid_ids(a.path, a.bad) | valid_ids(b.path, b.bad))
    assert query(settings, "SELECT blob_path, status FROM etl_runs ORDER BY blob_path") == [
        (blob_a, "loaded"),
        (blob_b, "loaded"),
    ]


def test_two_bad_files_routed_to_one_failed_name_at_once(
    settings: Settings, clean: None, cc: ContainerClient, copies_meet: threading.Barrier
) -> None:
    """Two failures that route to failed/sales/Y.csv at once: a lost failed/ file would be
    in no folder at all, never to be retried."""
    body_a, body_b = b"foo,bar\n1,2\n", b"transaction_id\nTX-1\n"
    cc.upload_blob("incoming/Y.csv", body_a)
    cc.upload_blob("incoming/sales/Y.csv", body_b)
    recs = run_threads(
        lambda: pipeline.process_blob(cc.get_blob_client("incoming/Y.csv"), settings),
        lambda: pipeline.process_blob(cc.get_blob_client("incoming/sales/Y.csv"), settings),
    )
    assert [(r.status, r.reason_code) for r in recs] == [("failed", "missing_columns")] * 2
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["processed/"] == []
    assert len(folders["failed/"]) == 2
    assert sorted(content(cc, n) for n in folders["failed/"]) == sorted([body_a, body_b])
    sources = {
        unquote_meta(cc.get_blob_client(n).get_blob_properties().metadata["source_path"])
        for n in folders["failed/"]
    }
    assert sources == {"incoming/Y.csv", "incoming/sales/Y.csv"}
    assert stored_ids(settings) == []


def test_a_taken_destination_is_never_overwritten(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    """A blob already at the destination (an earlier file, or planted) stays as it was;
    the moved file lands beside it, and a second move of the same name beside that."""
    cc.upload_blob("failed/sales/Z.csv", b"planted")
    for body in (b"first", b"second"):
        src = cc.upload_blob("incoming/Z.csv", body)
        etag = src.get_blob_properties().etag
        assert moves.move(cc, "incoming/Z.csv", "failed/sales/Z.csv", etag=etag) is not None
    failed = names(cc, "failed/")
    assert len(failed) == 3 and names(cc, "incoming/") == []
    assert content(cc, "failed/sales/Z.csv") == b"planted"
    assert sorted(content(cc, n) for n in failed) == [b"first", b"planted", b"second"]


# ----------------------------------------------------------------------------- versions


def second_version_meets_first(
    cc: ContainerClient, blob: str, v2: Path, settings: Settings, pause: Pause
) -> tuple[list[Any], list[Any]]:
    """The first invocation of ``blob`` runs until ``pause`` holds it; then ``v2`` overwrites
    the blob and a second invocation starts; then the first goes on. What each returned."""
    reached, resume = pause
    first, out = run_in_thread(lambda: pipeline.process_blob(cc.get_blob_client(blob), settings))
    assert reached.wait(60)
    storage.upload(cc, v2, name=blob.rsplit("/", 1)[-1])
    t2, second = run_in_thread(lambda: pipeline.process_blob(cc.get_blob_client(blob), settings))
    t2.join(2)  # the second invocation is waiting for the first (or already done: no matter)
    resume.set()
    first.join(120)
    t2.join(120)
    return out, second


def test_new_version_lands_while_the_old_one_is_read(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, pause_after_first_range: RangePause
) -> None:
    """v1 is being read; v2 overwrites it and its invocation starts at once. v1's read
    fails (blob_changed); v2 must end loaded, not skipped and stranded in incoming/."""
    fetched, resume, _ = pause_after_first_range
    v1 = generate(tmp_path / "v1.csv", 20_000, seed=911)
    v2 = generate(tmp_path / "v2.csv", 3_000, seed=912)
    blob = storage.upload(cc, v1.path, name="ver.csv")
    [rec1], [rec2] = second_version_meets_first(cc, blob, v2.path, settings, (fetched, resume))
    assert (rec1.status, rec1.reason_code) == ("failed", "blob_changed")
    assert rec2.status == "loaded"
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == [] and folders["rejected/"] == []
    [done] = folders["processed/"]
    assert content(cc, done) == v2.path.read_bytes()
    assert sorted(stored_ids(settings)) == sorted(valid_ids(v2.path, v2.bad))
    assert query(settings, "SELECT status, reason_code FROM etl_runs ORDER BY run_id") == [
        ("failed", "blob_changed"),
        ("loaded", None),
    ]


def test_new_version_lands_after_the_old_one_was_read_before_it_commits(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, pause_after_first_chunk: Pause
) -> None:
    """v1 is fully read and about to commit when v2 lands: v1's rows commit (they were
    read), v1 cannot be moved (it is gone); v2 must then be loaded and moved."""
    small = Settings(**{**settings.__dict__, "chunk_rows": 100})
    v1 = generate(tmp_path / "v1.csv", 1_000, seed=913)  # one range, ten chunks
    v2 = generate(tmp_path / "v2.csv", 700, seed=914)
    blob = storage.upload(cc, v1.path, name="late.csv")
    [rec1], [rec2] = second_version_meets_first(cc, blob, v2.path, small, pause_after_first_chunk)
    assert rec1.status == "loaded" and rec2.status == "loaded"
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == []
    [done] = folders["processed/"]
    assert content(cc, done) == v2.path.read_bytes()
    assert sorted(stored_ids(settings)) == sorted(valid_ids(v1.path, v1.bad) | valid_ids(v2.path, v2.bad))
    assert query(settings, "SELECT status, etag FROM etl_runs ORDER BY run_id") == [
        ("loaded", rec1.etag),
        ("loaded", rec2.etag),
    ]
    assert rec1.etag != rec2.etag


def test_an_invocation_that_cannot_claim_fails_for_a_retry(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another invocation holds the file for longer than the wait: this one must fail (so
    that the host retries it), not return success with the blob left in incoming/."""
    monkeypatch.setattr(ledger, "CLAIM_WAIT_SECONDS", 0.5, raising=False)
    g = generate(tmp_path / "held.csv", 200, seed=915)
    blob = storage.upload(cc, g.path)
    holder = connect(settings.require_admin_database())
    try:
        with holder.cursor() as cur:  # what a loading invocation holds
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"sales_etl:sales:{blob}",))
            with pytest.raises(hostcall.InvocationFailed) as raised:
                hostcall.invoke_blob_trigger(settings.container, blob)
        # the worker reports the invocation failed, with the typed error: the host retries
        assert raised.value.worker_message.startswith("TransientError: ")
        assert "still loading this file" in raised.value.worker_message
    finally:
        holder.rollback()
        holder.close()
    assert listing(cc) == {**{f: [] for f in FOLDERS}, "incoming/": [blob]}
    assert query(settings, "SELECT status, reason_code FROM etl_runs") == [("skipped", "in_progress")]
    hostcall.invoke_blob_trigger(settings.container, blob)  # the host's retry
    assert sorted(stored_ids(settings)) == sorted(valid_ids(g.path, g.bad))
    assert names(cc, "incoming/") == [] and len(names(cc, "processed/")) == 1


def test_a_waiting_delivery_takes_over_from_a_killed_worker(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """Two deliveries of one blob: the first worker is killed mid-COPY while the second
    waits for it. The second must then load the file (the host will not deliver it
    again: the second delivery succeeded)."""
    g = generate(tmp_path / "taken.csv", 100_000, seed=916)
    blob = storage.upload(cc, g.path)
    worker = start_python(WORKER, settings.container, blob)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and worker.poll() is None:
            if query(
                settings,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                " = 'sales-etl' AND query LIKE 'COPY%%' AND state = 'active'",
            )[0][0]:
                break
            time.sleep(0.02)
        assert worker.poll() is None, "the worker finished before it could be killed"
        t, second = run_in_thread(lambda: hostcall.invoke_blob_trigger(settings.container, blob))
        while (
            t.is_alive()
            and time.monotonic() < deadline
            and not query(
                settings,
                "SELECT count(*) FROM pg_stat_activity WHERE application_name"
                " = 'sales-etl' AND ((query LIKE '%%pg_try_advisory_xact_lock%%'"
                " AND state = 'idle in transaction') OR (query = 'ROLLBACK' AND state = 'idle'))",
            )[0][0]
        ):
            # until the second delivery is waiting for the first (between its tries it
            # rolls back: it holds no transaction open while it waits)
            time.sleep(0.02)
        assert t.is_alive()
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()
    t.join(180)
    assert second == [None]
    assert sorted(stored_ids(settings)) == sorted(valid_ids(g.path, g.bad))
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == []
    [done] = folders["processed/"]
    assert content(cc, done) == g.path.read_bytes()
    assert query(settings, "SELECT status FROM etl_runs") == [("loaded",)]


# ----------------------------------------------------------------------------- crashes

CRASH_AFTER_COPY = """
import os, signal, sys
from azure.storage.blob import BlobClient
from sales_etl_dev import hostcall
original = BlobClient.delete_blob
def die_before_delete(self, *args, **kwargs):
    if self.blob_name.startswith("incoming/"):  # the copy is made and verified: die now
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
BlobClient.delete_blob = die_before_delete
hostcall.invoke_blob_trigger(sys.argv[1], sys.argv[2])
"""


def test_worker_killed_between_copy_and_delete(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """The worker dies (SIGKILL) after its copy to processed/ and before deleting the
    source, its lease still held. The host's retry must converge: one copy in processed/,
    nothing left in incoming/, the rows once."""
    g = generate(tmp_path / "crash.csv", 2_000, seed=921)
    blob = storage.upload(cc, g.path)
    proc = run_python(CRASH_AFTER_COPY, settings.container, blob)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    after_crash = listing(cc)
    assert after_crash["incoming/"] == [blob] and len(after_crash["processed/"]) == 1
    assert cc.get_blob_client(blob).get_blob_properties().lease.state == "leased"
    hostcall.invoke_blob_trigger(settings.container, blob)  # the host's retry
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == []
    assert folders["processed/"] == after_crash["processed/"]
    assert content(cc, folders["processed/"][0]) == g.path.read_bytes()
    assert sorted(stored_ids(settings)) == sorted(valid_ids(g.path, g.bad))
    assert query(settings, "SELECT status, reason_code FROM etl_runs ORDER BY run_id") == [
        ("loaded", None),
        ("skipped", "already_loaded"),
    ]


FAIL_THEN_CRASH_AFTER_COPY = """
import os, signal, sys
import psycopg2
from azure.storage.blob import BlobClient
from sales_etl.db import load
from sales_etl_dev import hostcall
def connection_lost(self, *args, **kwargs):  # a transient failure at the merge
    raise psycopg2.OperationalError("server closed the connection unexpectedly")
load.Loader.finish = connection_lost
original = BlobClient.delete_blob
def die_before_delete(self, *args, **kwargs):
    if self.blob_name.startswith("incoming/"):  # copied to failed/: die now
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
BlobClient.delete_blob = die_before_delete
hostcall.invoke_blob_trigger(sys.argv[1], sys.argv[2])
"""


def assert_loaded_once_after_a_failure(settings: Settings, cc: ContainerClient, g: Any) -> None:
    """The file of ``g`` failed once (transient), then loaded: one blob, in processed/ only,
    every valid row once, and the ledger says exactly that."""
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == []
    [done] = folders["processed/"]
    assert content(cc, done) == g.path.read_bytes()
    assert sorted(stored_ids(settings)) == sorted(valid_ids(g.path, g.bad))
    assert query(settings, "SELECT status, reason_code FROM etl_runs ORDER BY run_id") == [
        ("failed", "db_unreachable"),
        ("loaded", None),
    ]


def test_worker_killed_between_copy_to_failed_and_delete_then_retry_loads(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """A transient failure; the worker dies after copying the blob to failed/ and before
    deleting it. The host's retry loads it: the blob must end in processed/ only, not
    also in failed/ (from where the sweep would send it round again)."""
    g = generate(tmp_path / "flaky.csv", 1_000, seed=922)
    blob = storage.upload(cc, g.path)
    proc = run_python(FAIL_THEN_CRASH_AFTER_COPY, settings.container, blob)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    after_crash = listing(cc)
    assert after_crash["incoming/"] == [blob] and after_crash["failed/"] == ["failed/sales/flaky.csv"]
    hostcall.invoke_blob_trigger(settings.container, blob)  # the host's retry
    assert_loaded_once_after_a_failure(settings, cc, g)


def test_sweep_before_the_retry_of_a_worker_killed_between_copy_to_failed_and_delete(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """As above, but the sweep runs before the host's retry (its copy in failed/ is due):
    it must leave that copy alone, or the file goes round twice (a second blob beside the
    first in incoming/, then two in processed/ and two loads in the ledger)."""
    g = generate(tmp_path / "flaky.csv", 500, seed=924)
    blob = storage.upload(cc, g.path)
    proc = run_python(FAIL_THEN_CRASH_AFTER_COPY, settings.container, blob)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    later = storage.now_utc() + timedelta(days=1)
    report = retry.sweep(settings, now=later)  # the timer fires before the host retries
    assert report.busy == ["failed/sales/flaky.csv"] and report.retried == []
    assert listing(cc)["incoming/"] == [blob]
    hostcall.invoke_blob_trigger(settings.container, blob)  # the host's retry
    assert retry.sweep(settings, now=later) == retry.SweepReport()
    assert_loaded_once_after_a_failure(settings, cc, g)


def test_sweep_sends_back_a_failed_blob_whose_source_is_gone_or_replaced(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """The check above holds back only a copy whose very source version is still in
    incoming/: once a new version is uploaded under the name, the failed/ blob is due as
    usual (and lands beside the new one)."""
    cc.upload_blob("incoming/sales/x.csv", b"first")
    src = cc.get_blob_client("incoming/sales/x.csv")
    assert (
        moves.move(
            cc,
            src.blob_name,
            "failed/sales/x.csv",
            etag=src.get_blob_properties().etag,
            metadata={"attempts": "1", "kind": "transient", "next_attempt_at": "2000-01-01T00:00:00+00:00"},
        )
        is not None
    )
    cc.upload_blob("incoming/sales/x.csv", b"second")  # a new version under the name
    report = retry.sweep(settings, now=storage.now_utc() + timedelta(days=1))
    assert report.busy == [] and len(report.retried) == 1
    assert names(cc, "failed/") == [] and len(names(cc, "incoming/")) == 2


SWEEP_CRASH_AFTER_COPY = """
import os, signal
from azure.storage.blob import BlobClient
from sales_etl.flow import retry
from sales_etl.storage import container as storage
from sales_etl.app.triggers import settings
original = BlobClient.delete_blob
def die_before_delete(self, *args, **kwargs):
    if self.blob_name.startswith("failed/"):  # copied back to incoming/: die now
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, *args, **kwargs)
BlobClient.delete_blob = die_before_delete
retry.sweep(settings())
"""


def test_sweep_killed_between_copy_and_delete(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """The sweep dies after copying a failed/ blob back to incoming/ and before deleting
    it. The blob is loaded from incoming/: the failed/ original must go too, or the next
    sweep sends the same file round again (a second copy in processed/)."""
    g = generate(tmp_path / "swept.csv", 500, seed=923)
    cc.upload_blob(
        "failed/sales/swept.csv",
        g.path.read_bytes(),
        metadata={
            "attempts": "1",
            "kind": "transient",
            "source_path": "incoming/sales/swept.csv",
            "next_attempt_at": "2000-01-01T00:00:00+00:00",
        },
    )
    proc = run_python(SWEEP_CRASH_AFTER_COPY)
    assert proc.returncode == -9, proc.stderr.decode()[-2000:]
    after_crash = listing(cc)
    assert after_crash["incoming/"] == ["incoming/sales/swept.csv"]
    assert after_crash["failed/"] == ["failed/sales/swept.csv"]
    hostcall.invoke_blob_trigger(settings.container, "incoming/sales/swept.csv")
    report = retry.sweep(settings, now=storage.now_utc() + timedelta(days=1))
    assert report.retried == [] and report.deadlettered == []
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == []
    [done] = folders["processed/"]
    assert content(cc, done) == g.path.read_bytes()
    assert sorted(stored_ids(settings)) == sorted(valid_ids(g.path, g.bad))
    assert query(settings, "SELECT status FROM etl_runs") == [("loaded",)]


# ----------------------------------------------------------------------------- rejects


def test_each_run_keeps_its_own_rejects(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """The same file name re-sent twice, and once more under incoming/sales/: three runs,
    three rejects files, each holding exactly its own run's rejects, none overwritten."""
    runs: list[dict[int, str]] = []  # each file's bad rows: line -> reason code
    for i, (count, dataset) in enumerate([(1, None), (2, None), (3, "sales")]):
        g = generate(in_dir(tmp_path, f"r{i}") / "R.csv", 50, bad_rows=count, seed=930 + i)
        blob = storage.upload(cc, g.path, dataset=dataset)
        hostcall.invoke_blob_trigger(settings.container, blob)
        runs.append(g.bad)
    ledger = query(
        settings,
        "SELECT run_uuid::text, rows_rejected, rejects_path FROM etl_runs"
        " WHERE status = 'loaded' ORDER BY run_id",
    )
    assert [r[1] for r in ledger] == [1, 2, 3]
    paths = [r[2] for r in ledger]
    assert len(set(paths)) == 3 and sorted(paths) == names(cc, "rejected/")
    for (run_uuid, _, path), bad in zip(ledger, runs, strict=True):
        assert run_uuid in path
        meta = cc.get_blob_client(path).get_blob_properties().metadata
        assert meta["run_uuid"] == run_uuid
        rows = list(csv.DictReader(io.StringIO(content(cc, path).decode())))
        assert {int(r["line"]): r["reason_code"] for r in rows} == bad
    assert len(names(cc, "processed/")) == 3 and names(cc, "incoming/") == []


def test_local_loads_keep_their_own_rejects(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """``sales-etl load`` of one file twice: each run writes its own rejects file beside
    the file, and its ledger row names that one."""
    g = generate(tmp_path / "L.csv", 40, bad_rows=2, seed=940)
    dataset = get_dataset("sales", settings.datasets_dir)
    first = pipeline.load_file(g.path, dataset, settings)
    second = pipeline.load_file(g.path, dataset, settings)
    assert first.rejects_path != second.rejects_path
    for rec in (first, second):
        assert rec.run_uuid in (rec.rejects_path or "")
        with open(rec.rejects_path or "", newline="") as f:
            assert {int(r["line"]): r["reason_code"] for r in csv.DictReader(f)} == g.bad


# ----------------------------------------------------------------------------- encoding


@pytest.mark.parametrize("name", ["enc.csv", "enc.csv.gz"])
def test_blob_stored_with_content_encoding_gzip(
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
) -> None:
    """Uploaded gzipped with ``Content-Encoding: gzip`` (as browsers and some tools do):
    the stored bytes are read as stored, over several ranges, and loaded."""
    monkeypatch.setattr(blobs, "RANGE_BYTES", 64 << 10)
    g = generate(tmp_path / "enc.csv", 8_000, seed=950)
    packed = gzip.compress(g.path.read_bytes())
    assert len(packed) > 3 * (64 << 10)
    blob = f"incoming/sales/{name}"
    cc.upload_blob(
        blob, packed, content_settings=ContentSettings(content_type="text/csv", content_encoding="gzip")
    )
    rec = pipeline.process_blob(cc.get_blob_client(blob), settings)
    assert (rec.status, rec.reason_code) == ("loaded", None)
    assert sorted(stored_ids(settings)) == sorted(valid_ids(g.path, g.bad))
    folders = listing(cc)
    assert folders["incoming/"] == [] and folders["failed/"] == []
    [done] = folders["processed/"]
    assert content(cc, done) == packed
    assert query(settings, "SELECT status, rows_read, bytes_read FROM etl_runs") == [
        ("loaded", 8_000, len(packed))
    ]


@pytest.mark.parametrize("stem", ["é" * 300, "%" * 400], ids=["non-ascii", "percent"])
def test_a_long_name_goes_round_failed_and_back_under_its_own_name(
    settings: Settings, clean: None, cc: ContainerClient, stem: str
) -> None:
    """A legal name whose percent-encoded form is longer than a metadata value may be:
    its source_path was cut short, and the sweep sent the blob back under the cut name
    (another name, without its .csv). It comes back under its own name."""
    name = f"incoming/sales/{stem}.csv"
    cc.get_blob_client(name).upload_blob(b"not,the,header\n1,2,3\n")
    hostcall.invoke_blob_trigger(settings.container, name)
    [failed] = names(cc, "failed/")
    meta = cc.get_blob_client(failed).get_blob_properties().metadata
    assert unquote_meta(meta.get("source_path", "")) in ("", name)  # whole, or none
    report = retry.sweep(settings, now=storage.now_utc() + timedelta(days=1), force=True)
    assert report.retried == [name] and report.errors == []
    assert names(cc, "incoming/") == [name] and names(cc, "failed/") == []
