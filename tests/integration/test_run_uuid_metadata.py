"""The run's UUID in blob metadata is ``run_uuid`` (the ledger's ``etl_runs.run_uuid``);
blobs moved by earlier versions of the app carry it as ``run_id``, which is still read
and, once the pipeline moves such a blob again, dropped rather than left naming a stale
run."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.flow import pipeline, retry
from sales_etl.storage import container as storage
from sales_etl_dev.generate import generate

from .conftest import names, query

OLD, NEW = "11111111-2222-4333-8444-555555555555", "66666666-7777-4888-9999-aaaaaaaaaaaa"
LATER = datetime.now(UTC) + timedelta(days=1)


def failed_blob(cc: ContainerClient, name: str, data: bytes, **meta: str) -> None:
    cc.get_blob_client(f"failed/sales/{name}").upload_blob(
        data,
        metadata={
            "attempts": "1",
            "kind": "transient",
            "source_path": f"incoming/sales/{name}",
            "next_attempt_at": datetime(2026, 1, 1, tzinfo=UTC).isoformat(),
            **meta,
        },
    )


def test_the_sweep_reads_the_run_uuid_under_either_key(
    settings: Settings, clean: None, cc: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="sales_etl")
    failed_blob(cc, "old.csv", b"x\n", run_id=OLD)  # as an earlier version wrote it
    failed_blob(cc, "new.csv", b"x\n", run_uuid=NEW)
    report = retry.sweep(settings, now=LATER)
    assert sorted(report.retried) == ["incoming/sales/new.csv", "incoming/sales/old.csv"]
    logged = {
        getattr(r, "blob", None): getattr(r, "run_uuid", None)
        for r in caplog.records
        if "back to" in r.getMessage()
    }
    assert logged == {"incoming/sales/old.csv": OLD, "incoming/sales/new.csv": NEW}
    assert not any(hasattr(r, "run_id") for r in caplog.records)


def test_moved_blobs_name_their_run_as_run_uuid_and_drop_the_old_key(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    g = generate(tmp_path / "good.csv", 50, bad_rows=1, seed=4401)
    good = "incoming/sales/good.csv"
    with g.path.open("rb") as data:  # a blob an earlier version sent back from failed/
        cc.get_blob_client(good).upload_blob(data, metadata={"attempts": "1", "run_id": OLD})
    cc.get_blob_client("incoming/sales/bad.csv").upload_blob(
        b"nothing,known\n1,2\n", metadata={"run_id": OLD}
    )
    loaded = pipeline.process_blob(cc.get_blob_client(good), settings)
    failed = pipeline.process_blob(cc.get_blob_client("incoming/sales/bad.csv"), settings)
    assert (loaded.status, failed.status, failed.reason_code) == ("loaded", "failed", "missing_columns")
    ledger = dict(query(settings, "SELECT blob_path, run_uuid::text FROM etl_runs"))
    assert ledger == {good: loaded.run_uuid, "incoming/sales/bad.csv": failed.run_uuid}
    [processed] = names(cc, "processed/")
    for blob, run_uuid in ((processed, loaded.run_uuid), ("failed/sales/bad.csv", failed.run_uuid)):
        meta = cc.get_blob_client(blob).get_blob_properties().metadata
        assert meta["run_uuid"] == run_uuid and "run_id" not in meta
        assert all(isinstance(v, str) for v in meta.values())
        assert storage.run_uuid_of(meta) == run_uuid
    [rejects] = names(cc, "rejected/")
    assert rejects.endswith(f".{loaded.run_uuid}.rejects.csv")
    meta = cc.get_blob_client(rejects).get_blob_properties().metadata
    assert meta["run_uuid"] == loaded.run_uuid and "run_id" not in meta


def test_tampered_run_uuid_metadata_names_no_run_in_the_sweeps_log(
    settings: Settings, clean: None, cc: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Metadata is untrusted: a ``run_uuid`` that is no UUID (huge, percent-encoded, a tab,
    a path) is not what the sweep's log line names as its run; a sound ``run_id`` beside it
    still is."""
    caplog.set_level(logging.INFO, logger="sales_etl")
    tampered = {
        "huge.csv": "a" * 7000,
        "pct.csv": "%0A%0Dfake%20line%00",
        "tab.csv": "x\ty",
        "path.csv": "../../etc",
    }
    for name, value in tampered.items():
        failed_blob(cc, name, b"x\n", run_uuid=value)
    failed_blob(cc, "both.csv", b"x\n", run_uuid="nonsense", run_id=OLD)
    report = retry.sweep(settings, now=LATER)
    assert len(report.retried) == 5
    logged = {
        getattr(r, "blob", None): getattr(r, "run_uuid", None)
        for r in caplog.records
        if "back to" in r.getMessage()
    }
    assert logged == {**{f"incoming/sales/{n}": "" for n in tampered}, "incoming/sales/both.csv": OLD}


def test_requeue_records_its_moves_whatever_the_reason_metadata_holds(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    """A ``reason`` that unquotes to a NUL (``%00``) is still written to the ledger (NUL
    spelled out): it failed the ledger rows of every blob of the requeue."""
    from sales_etl.flow import requeue

    cc.get_blob_client("deadletter/sales/nul.csv").upload_blob(
        b"x\n", metadata={"attempts": "5", "reason": "bad%00byte", "run_uuid": "x\ty"}
    )
    cc.get_blob_client("deadletter/sales/plain.csv").upload_blob(
        b"x\n", metadata={"attempts": "5", "reason": "plain"}
    )
    report = requeue.requeue(settings, everything=True)
    assert report.unrecorded == "" and len(report.moved) == 2
    rows = query(settings, "SELECT blob_path, reason_code, error FROM etl_runs ORDER BY blob_path")
    assert [r[:2] for r in rows] == [
        ("incoming/sales/nul.csv", "requeued"),
        ("incoming/sales/plain.csv", "requeued"),
    ]
    assert rows[0][2].endswith("last error: bad\\x00byte")
