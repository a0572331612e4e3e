"""Process one file: claim -> stream -> check -> clean -> protect -> stage -> commit -> file.

This module orchestrates only: each step is another module's (no storage SDK, no SQL here).

``attempt.load_source`` is the heart, shared by the blob trigger and ``sales-etl load``:
steps 1-7 in one database transaction, so a file's rows and its ledger row commit together
or not at all. ``process_blob`` wraps it with what a blob needs (``blobs.IncomingBlob``:
the pinned version, its stream, its rejects file) and then files it (step 8): processed/
when loaded, failed/ with its retry state when not. A failure is a typed error
(``errors.classify``); an attempt that loaded nothing is recorded in the ledger in a
transaction of its own. ``load_file`` is ``sales-etl load``'s way in (a local file).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO

from sales_etl import __version__
from sales_etl.config.settings import Settings, load_settings
from sales_etl.core.errors import ConfigError, DataError, EtlError, Skipped, TransientError, classify
from sales_etl.datasets.reader import dataset_version, get_dataset
from sales_etl.db.ledger import RunRecord
from sales_etl.flow import retrypolicy
from sales_etl.flow.attempt import Source, load_source, record_attempt, run_logger
from sales_etl.stages import names
from sales_etl.stages.spec import Dataset
from sales_etl.storage import container as storage
from sales_etl.storage.blobs import BlobRef, IncomingBlob

log = logging.getLogger("sales_etl")


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
    logger = run_logger(rec)
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
    run_logger(rec).info(
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
    record_attempt(settings, rec, error)
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
