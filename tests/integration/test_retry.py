"""The retry sweep against real Azurite, with a controllable clock."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.storage.blob import ContainerClient

from sales_etl import __version__
from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import dataset_version, get_dataset
from sales_etl.flow import pipeline, retry
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import generate

from .conftest import names, query

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def failed_blob(cc: ContainerClient, name: str, **meta: str) -> None:
    base = {
        "attempts": "1",
        "kind": "transient",
        "source_path": f"incoming/sales/{name}",
        "next_attempt_at": (T0 + timedelta(minutes=1)).isoformat(),
    }
    cc.get_blob_client(f"failed/sales/{name}").upload_blob(b"data\n", metadata={**base, **meta})


def test_transient_waits_for_backoff_then_returns(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    failed_blob(cc, "a.csv")
    early = retry.sweep(settings, now=T0)
    assert early.waiting == ["failed/sales/a.csv"] and names(cc, "incoming/") == []
    late = retry.sweep(settings, now=T0 + timedelta(minutes=2))
    assert late.retried == ["incoming/sales/a.csv"]
    assert names(cc) == ["incoming/sales/a.csv"]
    meta = cc.get_blob_client("incoming/sales/a.csv").get_blob_properties().metadata
    assert meta["attempts"] == "1"  # the count travels with the blob


def test_exhausted_blobs_are_deadlettered(settings: Settings, clean: None, cc: ContainerClient) -> None:
    failed_blob(cc, "b.csv", attempts=str(settings.retry.max_attempts))
    report = retry.sweep(settings, now=T0 + timedelta(days=1))
    assert report.deadlettered == ["deadletter/sales/b.csv"]
    assert names(cc) == ["deadletter/sales/b.csv"]


def test_data_failures_wait_for_a_change_or_force(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    current = dataset_version(get_dataset("sales"))
    failed_blob(cc, "same.csv", kind="data", dataset_version=current, app_version=__version__)
    failed_blob(cc, "old.csv", kind="data", dataset_version="0-old", app_version=__version__)
    report = retry.sweep(settings, now=T0 + timedelta(days=1))
    assert report.kept == ["failed/sales/same.csv"]
    assert report.retried == ["incoming/sales/old.csv"]
    forced = retry.sweep(settings, now=T0, force=True)
    assert forced.retried == ["incoming/sales/same.csv"]
    assert names(cc, "failed/") == []


def test_two_sweeps_at_once_move_each_blob_once(settings: Settings, clean: None, cc: ContainerClient) -> None:
    for i in range(12):
        failed_blob(cc, f"c{i}.csv")
    reports: list[retry.SweepReport] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        reports.append(retry.sweep(settings, now=T0 + timedelta(hours=1)))

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    moved = [n for r in reports for n in r.retried]
    assert sorted(moved) == [f"incoming/sales/c{i}.csv" for i in sorted(range(12), key=str)]
    assert names(cc) == sorted(moved)


def test_transient_database_failure_round_trip(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """Database unreachable: failed/ as transient with backoff; the sweep returns it; the
    next attempt loads it; the attempt count went up."""
    g = generate(tmp_path / "rt.csv", 250, seed=31)
    blob = storage.upload(cc, g.path)
    db = settings.require_database()
    broken = replace(settings, database=replace(db, port=1, connect_timeout=1))
    rec = pipeline.process_blob(cc.get_blob_client(blob), broken)
    assert rec.status == "failed" and rec.reason_code == "db_unreachable"
    meta = cc.get_blob_client("failed/sales/rt.csv").get_blob_properties().metadata
    assert (meta["kind"], meta["attempts"]) == ("transient", "1")
    due = datetime.fromisoformat(meta["next_attempt_at"])
    assert retry.sweep(settings, now=due - timedelta(seconds=1)).waiting
    assert retry.sweep(settings, now=due + timedelta(seconds=1)).retried == [blob]
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert query(settings, "SELECT status, attempt, rows_loaded FROM etl_runs") == [("loaded", 2, 250)]
