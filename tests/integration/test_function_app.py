"""The registered functions invoked as the host invokes them, on a real Azurite and
PostgreSQL: the blob trigger with a real BlobClient from the extension, the timer."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.stages.names import unquote_meta
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import BAD_KINDS, generate

from .conftest import names, query


def upload_generated(
    cc: ContainerClient,
    tmp_path: Path,
    name: str,
    rows: int,
    seed: int,
    bad: int = 0,
    dataset: str | None = None,
) -> tuple[str, dict[int, str]]:
    g = generate(tmp_path / name, rows, bad_rows=bad, seed=seed)
    return storage.upload(cc, g.path, dataset=dataset), g.bad


def test_blob_trigger_loads_moves_and_writes_rejects(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    blob, bad = upload_generated(cc, tmp_path, "day1.csv", 1500, 21, bad=len(BAD_KINDS), dataset="sales")
    etag = cc.get_blob_client(blob).get_blob_properties().etag
    hostcall.invoke_blob_trigger(settings.container, blob)  # raises if the invocation fails
    today = datetime.now(UTC)
    assert names(cc, "incoming/") == []
    assert names(cc, "processed/") == [f"processed/sales/{today:%Y/%m/%d}/day1.csv"]
    [(run_uuid,)] = query(settings, "SELECT run_uuid::text FROM etl_runs")
    rejects_path = f"rejected/sales/day1.csv.{run_uuid}.rejects.csv"
    assert names(cc, "rejected/") == [rejects_path]
    rejects = cc.download_blob(rejects_path).readall().decode()
    assert {int(r["line"]): r["reason_code"] for r in csv.DictReader(io.StringIO(rejects))} == bad
    [run] = query(
        settings,
        "SELECT status, trigger, etag, rows_read, rows_loaded, rows_rejected, rejects_path FROM etl_runs",
    )
    assert run == ("loaded", "blob", etag, 1500, 1500 - len(bad), len(bad), rejects_path)
    assert query(settings, "SELECT count(*) FROM sales") == [(1500 - len(bad),)]


def test_redelivery_of_a_processed_blob_is_a_no_op(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    blob, _ = upload_generated(cc, tmp_path, "again.csv", 300, 22)
    hostcall.invoke_blob_trigger(settings.container, blob)
    hostcall.invoke_blob_trigger(settings.container, blob)  # the blob has moved: skipped
    assert query(settings, "SELECT count(*) FROM sales") == [(300,)]
    assert query(settings, "SELECT count(*) FROM etl_runs WHERE status = 'loaded'") == [(1,)]


def test_same_content_under_another_name_adds_nothing(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    blob, _ = upload_generated(cc, tmp_path, "orig.csv", 400, 23)
    hostcall.invoke_blob_trigger(settings.container, blob)
    copy = storage.upload(cc, tmp_path / "orig.csv", name="copy.csv")
    hostcall.invoke_blob_trigger(settings.container, copy)
    runs = query(
        settings,
        "SELECT blob_path, rows_loaded, rows_duplicate, duplicate_of,"
        " reason_code FROM etl_runs ORDER BY run_id",
    )
    assert runs == [
        ("incoming/orig.csv", 400, 0, None, None),
        ("incoming/copy.csv", 0, 400, 1, "same_content"),
    ]
    assert len(names(cc, "processed/")) == 2


def test_bad_file_goes_to_failed_with_reason(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    path = tmp_path / "semi.csv"
    path.write_text("transaction_id;customer_id\nTX-1;C\n")
    blob = storage.upload(cc, path)
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert names(cc, "failed/") == ["failed/sales/semi.csv"]
    meta = cc.get_blob_client("failed/sales/semi.csv").get_blob_properties().metadata
    assert meta["kind"] == "data" and meta["attempts"] == "1"
    assert meta["reason_code"] == "bad_delimiter"
    assert "semicolons" in unquote_meta(meta["reason"])
    assert unquote_meta(meta["source_path"]) == "incoming/semi.csv"
    assert query(settings, "SELECT status, reason_code FROM etl_runs") == [("failed", "bad_delimiter")]


def test_unknown_dataset_fails_with_clear_reason(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    blob, _ = upload_generated(cc, tmp_path, "x.csv", 10, 24, dataset="nosuch")
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert names(cc, "failed/") == ["failed/nosuch/x.csv"]
    meta = cc.get_blob_client("failed/nosuch/x.csv").get_blob_properties().metadata
    assert meta["reason_code"] == "unknown_dataset"
    assert "unknown dataset 'nosuch'" in unquote_meta(meta["reason"])


def test_timer_trigger_runs_the_sweep(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("x\n")
    cc.get_blob_client("failed/sales/t.csv").upload_blob(
        path.read_bytes(),
        metadata={
            "attempts": "1",
            "kind": "transient",
            "next_attempt_at": "2000-01-01T00:00:00+00:00",
            "source_path": "incoming/sales/t.csv",
        },
    )
    hostcall.invoke_timer_trigger()  # raises if the invocation fails
    assert names(cc) == ["incoming/sales/t.csv"]
