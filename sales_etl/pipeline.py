"""Process one file: claim -> stream -> check -> clean -> protect -> stage -> commit -> file.

``load_source`` is the heart, shared by the blob trigger and ``sales-etl load``: it runs
one file in one database transaction, so its rows and its ledger row commit together or
not at all. ``process_blob`` wraps it with what a blob needs: routing, metadata, moving
the blob to processed/ or failed/ afterwards.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, Any, BinaryIO

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobClient, ContentSettings

from . import __version__, ledger, load, names, retry, storage, telemetry
from .datasets import Dataset, get_dataset
from .db import connect
from .errors import ConfigError, DataError, EtlError, Skipped, TransientError, classify
from .extract import HashingReader, iter_chunks
from .ledger import RunRecord
from .protect import Protector
from .reasons import file_code
from .rejects import RejectsWriter
from .settings import Settings, load_settings
from .transform import transform

log = logging.getLogger("sales_etl")
# How long a mover waits out another mover's lease on the blob (a crashed one's lapses
# after storage.LEASE_SECONDS) before failing the invocation so that the host retries.
MOVE_WAIT_SECONDS = 120.0


@dataclass
class Source:
    """A file to load: a blob version or a local file."""

    name: str  # the blob path or local path: how messages and the ledger name it
    dataset: Dataset
    opener: Callable[[], BinaryIO]
    etag: str | None = None
    attempt: int = 1
    trigger: str = "cli"
    run_uuid: str | None = None  # the invocation's run id, so its log lines and ledger row agree
    # Once the file's lock is held: None if this version is still the one to load, else
    # why not ("gone": moved by another invocation; "superseded": a newer version landed).
    current: Callable[[], str | None] | None = None


def dataset_version(dataset: Dataset) -> str:
    return f"{dataset.version}-{dataset.fingerprint}"


def make_protector(settings: Settings, dataset: Dataset) -> Protector | None:
    if not dataset.sensitive:
        return None
    fernet_keys, blind_key = settings.require_keys()
    return Protector(fernet_keys, blind_key)


def _logger(rec: RunRecord) -> logging.LoggerAdapter[logging.Logger]:
    return logging.LoggerAdapter(log, {"run_id": rec.run_uuid, "dataset": rec.dataset,
                                       "blob": rec.blob_path})


def load_source(settings: Settings, source: Source,
                write_rejects: Callable[[IO[bytes]], str],
                progress: Callable[[int], None] | None = None) -> RunRecord:
    """Load one file in one transaction. Raises a typed error on failure (after recording
    the failed attempt in the ledger when the database is reachable)."""
    dataset = source.dataset
    rec = RunRecord(dataset=dataset.name, blob_path=source.name, trigger=source.trigger,
                    etag=source.etag, attempt=source.attempt,
                    dataset_version=dataset_version(dataset))
    if source.run_uuid is not None:
        rec.run_uuid = source.run_uuid
    started = time.monotonic()
    started_ns = time.time_ns()
    timings = telemetry.Timings()
    protector = make_protector(settings, dataset)
    conn = connect(settings.require_database())
    try:
        with conn.cursor() as cur:
            if not ledger.claim(cur, dataset.name, source.name):
                raise Skipped(f"{source.name}: another invocation is still loading this file",
                              code="in_progress")
            if source.etag is not None:
                prior = ledger.loaded_run(cur, dataset.name, source.name, source.etag)
                if prior is not None:
                    rec.status, rec.reason_code, rec.duplicate_of = "skipped", "already_loaded", prior
                    rec.error = f"this blob version was already loaded by run {prior}"
                    rec.seconds = time.monotonic() - started
                    ledger.insert(cur, rec)
                    conn.commit()
                    return rec
            gone = source.current() if source.current is not None else None
            if gone is not None:
                raise Skipped(f"{source.name}: this version is no longer in place ({gone}):"
                              " nothing to load", code=file_code(gone))
            ledger.insert(cur, rec)
            _stream_into_target(cur, settings, source, rec, protector, settings.chunk_rows,
                                write_rejects, progress, timings)
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
        # invocation, also when the server is full (README: Scale-out).
        _close(conn)
        error = classify(exc) if isinstance(exc, Exception) else TransientError(
            f"interrupted: {type(exc).__name__}", code="interrupted")
        rec.seconds = time.monotonic() - started
        rec.stage_seconds = timings.rounded()
        _record_attempt(settings, rec, error)
        telemetry.record(rec, timings, started_ns)
        if error is exc or not isinstance(exc, Exception):
            raise
        raise error from exc
    finally:
        conn.close()


def _stream_into_target(cur: Any, settings: Settings, source: Source, rec: RunRecord,
                        protector: Protector | None, chunk_rows: int,
                        write_rejects: Callable[[IO[bytes]], str],
                        progress: Callable[[int], None] | None,
                        timings: telemetry.Timings) -> None:
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
        _logger(rec).warning("could not record the failed attempt in the ledger: %s",
                             classify(exc).message)


# ----------------------------------------------------------------------------- blobs


def process_blob(blob: BlobClient, settings: Settings | None = None,
                 trigger: str = "blob") -> RunRecord:
    """Process one blob under incoming/: the blob trigger's whole job."""
    settings = settings or load_settings()
    container = blob.container_name
    name = blob.blob_name
    route = storage.route(name)
    rec = RunRecord(dataset=route.dataset, blob_path=name, trigger=trigger)
    logger = _logger(rec)
    if not name.startswith(f"{storage.INCOMING}/"):
        logger.info("ignored %s: not under %s/", name, storage.INCOMING)
        rec.status, rec.reason_code = "skipped", "not_incoming"
        return rec
    try:
        names.confine(name, storage.INCOMING)  # before any storage call with this name
    except names.UnsafeName as exc:
        logger.error("%s", exc.message)
        rec.seconds = 0.0
        _record_attempt(settings, rec, exc)
        return rec
    cc = storage.service_client(settings.require_storage()).get_container_client(container)
    # The package's own client for the same blob (same setting, same identity): one retry
    # policy for every storage call of the invocation.
    blob = cc.get_blob_client(name)
    try:
        props = blob.get_blob_properties()
    except ResourceNotFoundError:
        logger.info("%s is gone (already moved by another invocation)", name)
        rec.seconds = 0.0
        _record_attempt(settings, rec, Skipped(
            f"{name}: the blob is gone (moved by the invocation that processed it)",
            code="gone"))
        return rec
    attempt = retry.parse_attempts((props.metadata or {}).get("attempts"),
                                   settings.retry.max_attempts) + 1  # untrusted metadata
    rec.etag, rec.attempt = props.etag, attempt
    try:
        dataset = get_dataset(route.dataset, settings.datasets_dir)
    except ConfigError as exc:
        error = DataError(f"{name}: {exc.message}", code="unknown_dataset")
        rec.seconds = 0.0
        _record_attempt(settings, rec, error)
        _to_failed(cc, route, rec, props.etag, error, settings, dataset=None)
        return rec

    def current() -> str | None:
        try:
            now = blob.get_blob_properties()
        except ResourceNotFoundError:
            return "gone"
        return None if now.etag == props.etag else "superseded"

    source = Source(name=name, dataset=dataset, etag=props.etag, attempt=attempt,
                    trigger=trigger, run_uuid=rec.run_uuid, current=current,
                    opener=lambda: storage.open_blob(blob, props.etag, props.size))

    def write_rejects(data: IO[bytes]) -> str:
        target = route.rejects(rec.run_uuid)
        cc.get_blob_client(target).upload_blob(  # never overwrites (If-None-Match: *)
            data, overwrite=False, content_settings=ContentSettings(content_type="text/csv"),
            metadata={"source_path": storage.quote_meta_path(name), "run_id": rec.run_uuid})
        return target

    try:
        rec = load_source(settings, source, write_rejects)
    except Skipped as exc:
        logger.info("%s", exc.message)
        rec.status, rec.reason_code = "skipped", exc.code
        if exc.code == "in_progress":  # fail the invocation: the host retries it later
            raise TransientError(exc.message, code="in_progress") from exc
        return rec
    except (DataError, TransientError) as exc:
        rec.status, rec.reason_code, rec.error = "failed", exc.code, exc.message
        logger.warning("%s failed (%s): %s", name, exc.kind, exc.message)
        _to_failed(cc, route, rec, props.etag, exc, settings, dataset=dataset)
        return rec
    # The day the version landed, not today: every mover of this version (a re-run after a
    # crash between copy and delete too) aims at the same names and finds its copy.
    landed = props.last_modified or storage.now_utc()
    moved = storage.move(cc, name, route.processed(landed), etag=props.etag,
                         wait=MOVE_WAIT_SECONDS, unique_suffix=rec.run_uuid[:8],
                         orphans=[route.failed()], drop_origin=True, metadata={
                             "run_id": rec.run_uuid, "status": rec.status,
                             "attempts": str(attempt)})
    _logger(rec).info(
        "%s %s: read %d, loaded %d, duplicates %d, rejected %d in %.2f s -> %s", name,
        rec.status, rec.rows_read, rec.rows_loaded, rec.rows_duplicate, rec.rows_rejected,
        rec.seconds or 0.0, moved or "(not moved: another invocation moves it, or a new "
        "version was uploaded meanwhile and stays in incoming/)")
    return rec


def _to_failed(cc: Any, route: storage.Route, rec: RunRecord, etag: str, error: EtlError,
               settings: Settings, dataset: Dataset | None) -> None:
    """Move the blob to failed/ with its retry state; if storage itself fails, raise so
    the host retries the invocation (nothing is lost: the blob is still in incoming/)."""
    retry = settings.retry
    delay = min(retry.max_seconds, retry.base_seconds * 2 ** max(0, rec.attempt - 1))
    metadata = {
        "attempts": str(rec.attempt),
        "kind": "transient" if isinstance(error, TransientError) else "data",
        "reason_code": error.code,
        "reason": storage.quote_meta(error.message, 900),
        "source_path": storage.quote_meta_path(rec.blob_path),
        "failed_at": storage.now_utc().isoformat(timespec="seconds"),
        "next_attempt_at": (storage.now_utc() + timedelta(seconds=delay)).isoformat(
            timespec="seconds"),
        "dataset_version": dataset_version(dataset) if dataset else "",
        "app_version": __version__,
        "run_id": rec.run_uuid,
    }
    try:
        storage.move(cc, rec.blob_path, route.failed(), etag=etag, metadata=metadata,
                     unique_suffix=rec.run_uuid[:8], wait=MOVE_WAIT_SECONDS, drop_origin=True)
    except Exception as exc:
        raise classify(exc) from exc


# ----------------------------------------------------------------------------- local files


def load_file(path: Path, dataset: Dataset, settings: Settings,
              progress: Callable[[int], None] | None = None) -> RunRecord:
    """``sales-etl load``: a local file straight into the database; rejects beside it."""

    run_uuid = str(uuid.uuid4())

    def write_rejects(data: IO[bytes]) -> str:
        target = path.with_name(f"{path.name}.{run_uuid}.rejects.csv")
        with target.open("xb") as out:  # each run its own file, never overwritten
            while block := data.read(1 << 20):
                out.write(block)
        return str(target)

    source = Source(name=str(path.resolve()), dataset=dataset, trigger="cli",
                    run_uuid=run_uuid, opener=lambda: path.open("rb"))
    return load_source(settings, source, write_rejects, progress)
