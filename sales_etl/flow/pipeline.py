"""Process one file: claim -> stream -> check -> clean -> protect -> stage -> commit -> file.

This module orchestrates only: each step is another module's (no storage SDK, no SQL here).

``load_source`` is the heart, shared by the blob trigger and ``sales-etl load``: it runs
one file in one database transaction, so its rows and its ledger row commit together or
not at all:

1 claim    ``ledger.claim_file``: the file's lock, then the re-checks (already loaded?
           moved away or replaced meanwhile?)
2-4        ``extract.iter_chunks`` (stream, check the header) and ``transform`` (clean)
5 protect  ``protect.Protector``
6-7        ``load.Loader`` (stage, merge) and ``ledger.finish``, then one commit

``process_blob`` wraps it with what a blob needs (``blobs.IncomingBlob``: the pinned
version, its stream, its rejects file) and then files it (step 8): processed/ when loaded,
failed/ with its retry state when not. A failure is a typed error (``errors.classify``);
an attempt that loaded nothing is recorded in the ledger in a transaction of its own.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from sales_etl import __version__
from sales_etl.config.keys import make_protector
from sales_etl.config.settings import Settings, load_settings
from sales_etl.core.errors import ConfigError, DataError, EtlError, Skipped, TransientError, classify
from sales_etl.core.reasons import Moved
from sales_etl.datasets.reader import dataset_version, get_dataset
from sales_etl.db import ledger, load
from sales_etl.db.connection import connect
from sales_etl.db.ledger import RunRecord
from sales_etl.flow import retrypolicy, telemetry
from sales_etl.stages import names
from sales_etl.stages.decode import HashingReader
from sales_etl.stages.extract import iter_chunks
from sales_etl.stages.protect import Protector
from sales_etl.stages.rejects import RejectsWriter
from sales_etl.stages.spec import Dataset
from sales_etl.stages.transform import transform
from sales_etl.storage import container as storage
from sales_etl.storage.blobs import BlobRef, IncomingBlob

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


def _logger(rec: RunRecord) -> logging.LoggerAdapter[logging.Logger]:
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
        _record_attempt(settings, rec, error)
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


def _record_attempt(settings: Settings, rec: RunRecord, error: EtlError) -> None:
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
        _logger(rec).warning("could not record the failed attempt in the ledger: %s", classify(exc).message)


# ----------------------------------------------------------------------------- blobs


def process_blob(blob: BlobRef, settings: Settings | None = None, trigger: str = "blob") -> RunRecord:
    """Process one blob under incoming/: the blob trigger's whole job. Its name is checked,
    its current version pinned, its dataset found; then ``load_source`` (claim .. commit)
    and the blob is filed:

    * loaded, or skipped as ``already_loaded`` (an earlier invocation committed and died
      before moving it): to processed/;
    * failed (a ``DataError`` or ``TransientError``, an unknown dataset included): to
      failed/ with its retry state;
    * skipped as ``gone`` or ``superseded``: left alone (moved by another invocation, or
      a newer version whose own invocation loads it);
    * ``in_progress`` (the file's lock still held after the wait): raises
      ``TransientError``, so the invocation fails and the host retries it;
    * a name outside incoming/ is ignored, an unsafe one recorded and left in place.

    A storage failure while filing raises too (the blob is still in incoming/)."""
    settings = settings or load_settings()
    name = blob.blob_name
    rec = RunRecord(dataset=storage.route(name).dataset, blob_path=name, trigger=trigger)
    logger = _logger(rec)
    if not name.startswith(f"{storage.INCOMING}/"):
        logger.info("ignored %s: not under %s/", name, storage.INCOMING)
        rec.status, rec.reason_code = "skipped", "not_incoming"
        return rec
    try:
        names.confine(name, storage.INCOMING)  # before any storage call with this name
    except names.UnsafeName as exc:
        logger.error("%s", exc.message)
        return _ended(settings, rec, exc)
    incoming = IncomingBlob.find(settings, blob.container_name, name)
    if incoming is None:
        logger.info("%s is gone (already moved by another invocation)", name)
        return _ended(
            settings,
            rec,
            Skipped(f"{name}: the blob is gone (moved by the invocation that processed it)", code="gone"),
        )
    rec.etag = incoming.etag
    rec.attempt = (
        retrypolicy.parse_attempts(
            incoming.metadata.get("attempts"),  # untrusted
            settings.retry.max_attempts,
        )
        + 1
    )
    try:
        dataset = get_dataset(rec.dataset, settings.datasets_dir)
    except ConfigError as exc:
        error = DataError(f"{name}: {exc.message}", code="unknown_dataset")
        _ended(settings, rec, error)
        _to_failed(incoming, rec, error, settings, dataset=None)
        return rec
    run_uuid = rec.run_uuid
    source = Source(
        name=name,
        dataset=dataset,
        etag=incoming.etag,
        attempt=rec.attempt,
        trigger=trigger,
        run_uuid=run_uuid,
        current=incoming.current,
        opener=incoming.open,
    )
    try:
        rec = load_source(settings, source, lambda data: incoming.write_rejects(data, run_uuid))
    except Skipped as exc:
        logger.info("%s", exc.message)
        rec.status, rec.reason_code = "skipped", exc.code
        if exc.code == "in_progress":  # fail the invocation: the host retries it later
            raise TransientError(exc.message, code="in_progress") from exc
        return rec
    except (DataError, TransientError) as exc:
        rec.status, rec.reason_code, rec.error = "failed", exc.code, exc.message
        logger.warning("%s failed (%s): %s", name, exc.kind, exc.message)
        _to_failed(incoming, rec, exc, settings, dataset=dataset)
        return rec
    moved = incoming.to_processed(rec.run_uuid, {"status": rec.status, "attempts": str(rec.attempt)})
    _logger(rec).info(
        "%s %s: read %d, loaded %d, duplicates %d, rejected %d in %.2f s -> %s",
        name,
        rec.status,
        rec.rows_read,
        rec.rows_loaded,
        rec.rows_duplicate,
        rec.rows_rejected,
        rec.seconds or 0.0,
        moved
        or "(not moved: another invocation moves it, or a new "
        "version was uploaded meanwhile and stays in incoming/)",
    )
    return rec


def _ended(settings: Settings, rec: RunRecord, error: EtlError) -> RunRecord:
    """An attempt that ended before loading anything: recorded, and returned."""
    rec.seconds = 0.0
    _record_attempt(settings, rec, error)
    return rec


def _to_failed(
    incoming: IncomingBlob, rec: RunRecord, error: EtlError, settings: Settings, dataset: Dataset | None
) -> None:
    """Move the blob to failed/ with its retry state; if storage itself fails, raise so
    the host retries the invocation (nothing is lost: the blob is still in incoming/)."""
    metadata = {
        **retrypolicy.failure_metadata(
            attempt=rec.attempt,
            error=error,
            now=storage.now_utc(),
            dataset_version=dataset_version(dataset) if dataset else "",
            app_version=__version__,
            policy=settings.retry,
        ),
        "source_path": names.quote_meta_path(rec.blob_path),
    }
    try:
        incoming.to_failed(rec.run_uuid, metadata)  # the run's UUID goes with it
    except Exception as exc:
        raise classify(exc) from exc


# ----------------------------------------------------------------------------- local files


def load_file(
    path: Path, dataset: Dataset, settings: Settings, progress: Callable[[int], None] | None = None
) -> RunRecord:
    """``sales-etl load``: a local file straight into the database; rejects beside it."""

    run_uuid = str(uuid.uuid4())

    def write_rejects(data: IO[bytes]) -> str:
        target = path.with_name(f"{path.name}.{run_uuid}.rejects.csv")
        with target.open("xb") as out:  # each run its own file, never overwritten
            while block := data.read(1 << 20):
                out.write(block)
        return str(target)

    source = Source(
        name=str(path.resolve()),
        dataset=dataset,
        trigger="cli",
        run_uuid=run_uuid,
        opener=lambda: path.open("rb"),
    )
    return load_source(settings, source, write_rejects, progress)
