"""One attempt at one file, in one database transaction (``load_source``): its rows and its
ledger row commit together or not at all, and an attempt that fails is recorded in the
ledger in a transaction of its own. Shared by the blob trigger and ``sales-etl load``
(``pipeline``); orchestration only (no storage SDK, no SQL here):

1 claim    ``ledger.claim_file``: the file's lock, then the re-checks (already loaded?
           moved away or replaced meanwhile?)
2-4        ``extract.iter_chunks`` (stream, check the header) and ``transform`` (clean)
5 protect  ``protect.Protector``
6-7        ``load.Loader`` (stage, merge) and ``ledger.finish``, then one commit
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from sales_etl.config.keys import make_protector
from sales_etl.config.settings import Settings
from sales_etl.core.errors import EtlError, Skipped, TransientError, classify
from sales_etl.core.reasons import Moved
from sales_etl.datasets.reader import dataset_version
from sales_etl.db import ledger, load
from sales_etl.db.connection import connect
from sales_etl.db.ledger import RunRecord
from sales_etl.flow import telemetry
from sales_etl.stages.decode import HashingReader
from sales_etl.stages.extract import iter_chunks
from sales_etl.stages.protect import Protector
from sales_etl.stages.rejects import RejectsWriter
from sales_etl.stages.spec import Dataset
from sales_etl.stages.transform import transform

log = logging.getLogger("sales_etl")


@dataclass
class Source:
    """A file to load: a blob version or a local file."""

    name: str  # the blob path or local path: how messages and the ledger name it
    dataset: Dataset
    opener: Callable[[], BinaryIO]
    etag: str | None = None
    attempt: int = 1
    trigger: str = "cli"
    run_uuid: str | None = None  # chosen by the caller, so its log lines and ledger row agree
    # Once the file's lock is held: None if this version is still the one to load, else
    # why not ("gone": moved by another invocation; "superseded": a newer version landed).
    current: Callable[[], Moved | None] | None = None


def run_logger(rec: RunRecord) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(
        log, {"run_uuid": rec.run_uuid, "dataset": rec.dataset, "blob": rec.blob_path}
    )


def load_source(
    settings: Settings,
    source: Source,
    write_rejects: Callable[[IO[bytes]], str],
    progress: Callable[[int], None] | None = None,
) -> RunRecord:
    """Load one file in one transaction. Raises a typed error on failure (after recording
    the failed attempt in the ledger when the database is reachable)."""
    dataset = source.dataset
    rec = RunRecord(
        dataset=dataset.name,
        blob_path=source.name,
        trigger=source.trigger,
        etag=source.etag,
        attempt=source.attempt,
        dataset_version=dataset_version(dataset),
    )
    if source.run_uuid is not None:
        rec.run_uuid = source.run_uuid
    started = time.monotonic()
    started_ns = time.time_ns()
    timings = telemetry.Timings()
    protector = make_protector(settings, dataset)
    conn = connect(settings.require_database())
    try:
        with conn.cursor() as cur:
            prior = ledger.claim_file(cur, dataset.name, source.name, source.etag, source.current)
            if prior is not None:  # this very version: recorded as a skip, nothing loaded
                rec.status, rec.reason_code, rec.duplicate_of = "skipped", "already_loaded", prior
                rec.error = f"this blob version was already loaded by run {prior}"
                rec.seconds = time.monotonic() - started
                ledger.insert(cur, rec)
                conn.commit()
                return rec
            ledger.insert(cur, rec)
            _stream_into_target(
                cur, settings, source, rec, protector, settings.chunk_rows, write_rejects, progress, timings
            )
            assert rec.content_sha256 is not None
            rec.duplicate_of = ledger.loaded_content(cur, dataset.name, rec.content_sha256)
            rec.status = "loaded"
            if rec.duplicate_of is not None:
                rec.reason_code = "same_content"
            rec.seconds = time.monotonic() - started
            rec.stage_seconds = timings.rounded()
            ledger.finish(cur, rec)
        conn.commit()
        telemetry.record(rec, timings, started_ns)
        return rec
    except BaseException as exc:
        _rollback(conn)
        # Closed before the attempt records itself on a connection of its own: one slot per
        # invocation, also when the server is full (docs/scale-out.md).
        _close(conn)
        error = (
            classify(exc)
            if isinstance(exc, Exception)
            else TransientError(f"interrupted: {type(exc).__name__}", code="interrupted")
        )
        rec.seconds = time.monotonic() - started
        rec.stage_seconds = timings.rounded()
        record_attempt(settings, rec, error)
        telemetry.record(rec, timings, started_ns)
        if error is exc or not isinstance(exc, Exception):
            raise
        raise error from exc
    finally:
        conn.close()


def _stream_into_target(
    cur: Any,
    settings: Settings,
    source: Source,
    rec: RunRecord,
    protector: Protector | None,
    chunk_rows: int,
    write_rejects: Callable[[IO[bytes]], str],
    progress: Callable[[int], None] | None,
    timings: telemetry.Timings,
) -> None:
    """Stream the file through the stages into the target (inside the caller's
    transaction) and fill the record's counts, each counted on its own."""
    dataset = source.dataset
    loader = load.Loader(cur, dataset, rec.run_id or 0, lookup=True)
    rejects = RejectsWriter()
    raw = source.opener()
    try:
        hashing = HashingReader(raw)
        header, chunks = iter_chunks(hashing, dataset, source.name, chunk_rows)  # type: ignore[arg-type]
        rec.unknown_columns = list(header.unknown) or None
        if protector is not None:
            protector.new_file()
        while True:
            with timings.stage("read"):
                chunk = next(chunks, None)
            if chunk is None:
                break
            with timings.stage("transform"):
                result = transform(chunk, header, dataset)
                columns, lines = result.columns, result.lines
            if loader.filtering:  # after a collision: skip rows already stored, unencrypted
                with timings.stage("copy"):
                    columns, lines = loader.drop_stored(columns, lines)
            if protector is not None and len(lines):
                with timings.stage("protect"):
                    columns = protector.protect(columns, dataset)
            with timings.stage("copy"):
                loader.add(columns, lines)
            rejects.add(result.rejects)
            rec.rows_read += len(chunk)
            if progress is not None:
                progress(len(chunk))
        with timings.stage("read"):
            hashing.drain()
        rec.content_sha256 = hashing.sha256.hexdigest()
        rec.bytes_read = hashing.bytes_read
        with timings.stage("merge"):
            rec.rows_loaded, rec.rows_duplicate, late_rejects = loader.finish()
            rejects.add(late_rejects)  # in-file duplicates, unique conflicts (streamed)
        rec.rows_rejected = rejects.count
        if rejects.count:
            rec.rejects_path = write_rejects(rejects.open_bytes())
    finally:
        loader.close()
        raw.close()
        rejects.close()


def _rollback(conn: Any) -> None:
    with contextlib.suppress(Exception):  # the connection may already be gone
        conn.rollback()


def _close(conn: Any) -> None:
    with contextlib.suppress(Exception):
        conn.close()


def record_attempt(settings: Settings, rec: RunRecord, error: EtlError) -> None:
    """Record an attempt that loaded nothing (skipped or failed) in a transaction of its own."""
    rec.status = "skipped" if isinstance(error, Skipped) else "failed"
    rec.reason_code = error.code
    rec.error = error.message[:2000]
    try:
        conn = connect(settings.require_database(), autocommit=True)
        try:
            with conn.cursor() as cur:
                rec.run_id = None
                ledger.insert(cur, rec)
        finally:
            conn.close()
    except Exception as exc:
        run_logger(rec).warning(
            "could not record the failed attempt in the ledger: %s", classify(exc).message
        )
