"""The app under the genuine Azure Functions Python worker library (azure-functions-runtime,
the one pinned in requirements.txt), driven with the messages and payloads the host sends,
on the real Azurite and PostgreSQL: invocation on the worker's thread pool, concurrent
deliveries of one blob, redelivery, a failing invocation, the timer, and the log records
the host receives."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import BlobClient, ContainerClient

from sales_etl.app import triggers
from sales_etl.config.settings import Settings
from sales_etl.db import load
from sales_etl.flow import pipeline
from sales_etl.stages.names import unquote_meta
from sales_etl.storage import blobs, moves
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import generate

from .conftest import names, query


@pytest.fixture
def worker(stack: Any) -> Iterator[hostcall.WorkerHost]:
    w = hostcall.worker()
    w.logs.clear()
    # as in a worker process: no CLI has set the "azure" loggers (the CLI tests run in
    # this process and quiet them); what the host receives is then up to the app alone
    azure = logging.getLogger("azure")
    level = azure.level
    azure.setLevel(logging.NOTSET)
    # and the root logger at INFO, as the worker keeps it for its whole life (a caplog of
    # an earlier test that started the worker restores the level it saw before)
    root = logging.getLogger()
    root_level = root.level
    root.setLevel(logging.INFO)
    try:
        yield w
    finally:
        azure.setLevel(level)
        root.setLevel(root_level)


def upload(cc: ContainerClient, tmp_path: Path, name: str, rows: int, seed: int) -> str:
    return storage.upload(cc, generate(tmp_path / name, rows, seed=seed).path)


def test_the_host_payload_loads_a_file_on_the_worker_pool(
    worker: hostcall.WorkerHost,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = upload(cc, tmp_path, "w1.csv", 30_000, 91)
    request = worker.blob_request(settings.container, blob)
    ir = request.invocation_request
    # what the host sends for the SDK-type binding: a reference, never the bytes
    [param] = ir.input_data
    mbd = param.data.model_binding_data
    assert (param.name, mbd.version, mbd.source, mbd.content_type) == (
        "client",
        "1.0",
        "AzureStorageBlobs",
        "application/json",
    )
    assert ir.trigger_metadata["BlobTrigger"].string == f"{settings.container}/{blob}"
    assert ir.trigger_metadata["name"].string == blob.removeprefix("incoming/")
    # spy on the thread that runs the user function and on the COPY thread it starts
    seen: dict[str, str] = {}
    original_copy = load.Loader._copy

    def copy_and_log(self: load.Loader, *args: Any) -> None:
        seen.setdefault("copy", threading.current_thread().name)
        logging.getLogger("tests.copy-thread").warning("COPY thread at work")
        original_copy(self, *args)

    monkeypatch.setattr(load.Loader, "_copy", copy_and_log)
    on_blob = triggers.on_blob

    def on_blob_spy(client: Any) -> Any:
        seen["function"] = threading.current_thread().name
        return on_blob(client)

    monkeypatch.setattr(triggers, "on_blob", on_blob_spy)
    [result] = worker.deliver([request])
    assert result.ok, result.message
    assert query(settings, "SELECT count(*) FROM sales") == [(30_000,)]
    assert query(settings, "SELECT status, trigger, rows_loaded FROM etl_runs") == [
        ("loaded", "blob", 30_000)
    ]
    assert names(cc, "incoming/") == []
    assert names(cc, "processed/") == [f"processed/sales/{datetime.now(UTC):%Y/%m/%d}/w1.csv"]
    assert seen["copy"].startswith("copy")
    # the user function ran on the worker's own thread pool, not on the event loop's thread
    pool = worker.runtime.get_threadpool_executor()
    assert seen["function"].startswith(pool._thread_name_prefix)
    assert seen["function"] != "worker-loop"
    # the host's log: every record of the invocation, thread or not, carries its id;
    # the Azure SDK's per-request HTTP records stay out of it
    records = list(worker.logs)
    copy_records = [r for r in records if r.category == "tests.copy-thread"]
    assert len(copy_records) >= 3  # 30,000 rows in chunks of 10,000
    assert {r.invocation_id for r in copy_records} == {result.invocation_id}
    ours = [r for r in records if r.category.startswith("sales_etl")]
    assert ours and {r.invocation_id for r in ours} == {result.invocation_id}
    assert not [r for r in records if r.category.startswith("azure.core.pipeline")]
    assert (
        next(
            r for r in records if r.category == "azure.functions" and "Function name: load_blob" in r.message
        ).invocation_id
        == result.invocation_id
    )


def test_prefetch_thread_records_carry_the_invocation_id(
    worker: hostcall.WorkerHost, settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """Re-enable the SDK's HTTP logging for this test: its records from the prefetch
    (blob-range) thread must still name the invocation (the context is carried over)."""
    blob = upload(cc, tmp_path, "w2.csv", 40_000, 92)
    request = worker.blob_request(settings.container, blob)  # the host's own reads: not logged
    http = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    level = http.level
    http.setLevel(logging.INFO)
    try:
        [result] = worker.deliver([request])
    finally:
        http.setLevel(level)
    assert result.ok, result.message
    sdk = [r for r in worker.logs if r.category.startswith("azure.core.pipeline")]
    assert len(sdk) > 4
    assert {r.invocation_id for r in sdk} == {result.invocation_id}


def test_concurrent_deliveries_of_one_blob_load_it_once(
    worker: hostcall.WorkerHost, settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    blob = upload(cc, tmp_path, "w3.csv", 5_000, 93)
    requests = [worker.blob_request(settings.container, blob) for _ in range(4)]
    results = worker.deliver(requests)
    assert len({r.invocation_id for r in results}) == 4
    assert all(r.ok for r in results), [r.message for r in results]
    assert query(settings, "SELECT count(*), count(DISTINCT transaction_id) FROM sales") == [(5_000, 5_000)]
    assert query(settings, "SELECT count(*) FROM etl_runs WHERE status = 'loaded'") == [(1,)]
    assert len(names(cc, "processed/")) == 1 and names(cc, "incoming/") == []
    assert names(cc, "failed/") == []


def test_redelivery_after_success_is_a_no_op(
    worker: hostcall.WorkerHost,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blob = upload(cc, tmp_path, "w4.csv", 2_000, 94)
    clients: list[Any] = []
    on_blob = triggers.on_blob

    def on_blob_spy(client: Any) -> Any:
        clients.append(client)
        return on_blob(client)

    monkeypatch.setattr(triggers, "on_blob", on_blob_spy)
    [first] = worker.deliver([worker.blob_request(settings.container, blob)])
    # the host redelivers (at-least-once), with its retry count, after the blob has moved
    [again] = worker.deliver([worker.blob_request(settings.container, blob, retry_count=1)])
    assert first.ok and again.ok, again.message
    assert query(settings, "SELECT count(*) FROM sales") == [(2_000,)]
    assert query(settings, "SELECT status, reason_code FROM etl_runs ORDER BY run_id") == [
        ("loaded", None),
        ("skipped", "gone"),
    ]
    assert len(names(cc, "processed/")) == 1 and names(cc, "incoming/") == []
    # the injected client, built by the blob extension from the SalesStorage setting; the
    # runtime (1.3.0) builds one per delivery: nothing but the setting is shared
    assert [(c.container_name, c.blob_name) for c in clients] == [(settings.container, blob)] * 2
    assert isinstance(clients[0], BlobClient) and clients[0] is not clients[1]


def test_an_invocation_that_raises_is_reported_failed_and_the_retry_loads(
    worker: hostcall.WorkerHost,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Storage fails mid-read and the blob cannot even be parked in failed/: the function
    raises, the worker reports Failure, the host retries (up to poisonBlobThreshold) and
    the retry loads the file once."""
    blob = upload(cc, tmp_path, "w5.csv", 3_000, 95)
    original_fetch, original_move = blobs.RangeReader._fetch, moves.move

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise ConnectionResetError("storage went away")

    monkeypatch.setattr(blobs.RangeReader, "_fetch", unreachable)
    monkeypatch.setattr(moves, "move", unreachable)
    [failed] = worker.deliver([worker.blob_request(settings.container, blob)])
    assert not failed.ok and "storage went away" in failed.message
    assert "Traceback" not in failed.message and failed.stack_trace
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    assert names(cc) == [blob]  # untouched: the host's retry finds it where it was
    monkeypatch.setattr(blobs.RangeReader, "_fetch", original_fetch)
    monkeypatch.setattr(moves, "move", original_move)
    [retried] = worker.deliver([worker.blob_request(settings.container, blob, retry_count=1)])
    assert retried.ok, retried.message
    assert query(settings, "SELECT count(*), count(DISTINCT transaction_id) FROM sales") == [(3_000, 3_000)]
    assert len(names(cc, "processed/")) == 1 and names(cc, "incoming/") == []


def test_a_function_failure_reaches_the_host_as_failure(
    worker: hostcall.WorkerHost, settings: Settings, clean: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(client: Any) -> None:
        raise RuntimeError("database unreachable")

    monkeypatch.setattr(triggers, "on_blob", boom)
    [result] = worker.deliver([worker.blob_request(settings.container, "incoming/x.csv")])
    assert not result.ok
    assert result.message == "RuntimeError: database unreachable"
    with pytest.raises(hostcall.InvocationFailed, match="database unreachable"):
        hostcall.invoke_blob_trigger(settings.container, "incoming/x.csv")


def test_the_timer_with_the_host_json_runs_the_sweep(
    worker: hostcall.WorkerHost, settings: Settings, clean: None, cc: ContainerClient
) -> None:
    cc.get_blob_client("failed/sales/t.csv").upload_blob(
        b"x\n",
        metadata={
            "attempts": "1",
            "kind": "transient",
            "next_attempt_at": "2000-01-01T00:00:00+00:00",
            "source_path": "incoming/sales/t.csv",
        },
    )
    request = worker.timer_request(past_due=True)
    assert '"IsPastDue": true' in request.invocation_request.input_data[0].data.json
    [result] = worker.deliver([request])
    assert result.ok, result.message
    assert names(cc) == ["incoming/sales/t.csv"]
    assert any(
        "retry sweep is running late" in r.message and r.invocation_id == result.invocation_id
        for r in worker.logs
    )


def test_a_broken_dataset_fails_only_its_own_files(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """DATASETS_DIR overrides customers with a broken file: a customers file fails with
    the reason, a sales file still loads (the worker reports the broken one at start)."""
    extra = tmp_path / "datasets"
    extra.mkdir()
    (extra / "customers.toml").write_text('name = "customers"\nversion = 1\n[columns\n')
    with_broken = replace(settings, datasets_dir=extra)
    sales = storage.upload(cc, generate(tmp_path / "s.csv", 500, seed=96).path, dataset="sales")
    (tmp_path / "c.csv").write_text("customer_id,first_name\nC1,Ann\n")
    customers = storage.upload(cc, tmp_path / "c.csv", dataset="customers")
    loaded = pipeline.process_blob(cc.get_blob_client(sales), with_broken)
    failed = pipeline.process_blob(cc.get_blob_client(customers), with_broken)
    assert (loaded.status, loaded.rows_loaded) == ("loaded", 500)
    assert failed.status == "failed"
    assert query(settings, "SELECT count(*) FROM sales") == [(500,)]
    assert query(settings, "SELECT count(*) FROM customers") == [(0,)]
    [parked] = names(cc, "failed/")
    assert parked == "failed/customers/c.csv"
    reason = unquote_meta(cc.get_blob_client(parked).get_blob_properties().metadata["reason"])
    assert "customers.toml" in reason and "not valid TOML" in reason
