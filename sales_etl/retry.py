"""The retry sweep (timer trigger, and ``sales-etl retry-failed``).

Retry state lives on the blob (metadata written when it was moved to failed/), so the
sweep needs storage only and works while the database is down:

* transient failures go back to incoming/ once ``next_attempt_at`` has passed
  (exponential backoff from the attempt count);
* data failures go back only when the dataset definition or the app version changed since
  the failure, or when forced;
* a blob that used up ``RETRY_MAX_ATTEMPTS`` goes to deadletter/ with an error log line,
  forced or not (``sales-etl requeue`` gives a blob a fresh set of attempts).

Each move holds a short lease on the failed blob, so two sweeps never move one blob twice.
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from azure.storage.blob import ContainerClient

from . import __version__, moves, names, storage
from .datasets import dataset_version, scan_datasets
from .errors import classify
from .settings import Settings

log = logging.getLogger("sales_etl")


@dataclass
class SweepReport:
    retried: list[str] = field(default_factory=list)
    deadlettered: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # data failures with nothing changed
    busy: list[str] = field(default_factory=list)  # moved or leased by another sweep
    refused: list[str] = field(default_factory=list)  # names that escape failed/: untouched
    errors: list[str] = field(default_factory=list)  # this blob's move failed; the rest went on
    last_target: str = ""


# ----------------------------------------------------------------------------- metadata
# Blob metadata is untrusted input: anyone who can upload can set it. Each value is parsed
# defensively and clamped; an unreadable one has a fixed meaning, never an exception.

_ATTEMPTS_MAX_TEXT = 12


def parse_attempts(value: str | None, maximum: int) -> int:
    """The ``attempts`` a blob's metadata claims, clamped to 0..``maximum``: a whole number
    (``2``, also written ``2.0``); negative counts as 0, more than ``maximum`` as
    ``maximum``; anything unreadable (``abc``, ``2.5``, ``nan``, empty) as 0: a file whose
    retry state is unreadable starts over, and the next failure writes a sound one."""
    text = (value or "").strip()
    if not text or len(text) > _ATTEMPTS_MAX_TEXT:
        return maximum if text.lstrip("+").isdigit() else 0
    try:
        number = Decimal(text)
    except InvalidOperation:
        return 0
    if not number.is_finite() or number != number.to_integral_value():
        return 0
    if number.adjusted() > 18:  # "1e9999999": clamped without building a 10-million-digit int
        return maximum if number > 0 else 0
    return max(0, min(maximum, int(number)))


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time from metadata, as UTC (a time without a zone is read as UTC);
    None when unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # (year 1 at +14:00 is before datetime.min in UTC)
        return None


def next_attempt(meta: dict[str, str], moved_at: datetime | None, settings: Settings) -> datetime | None:
    """When a transient failure is due again: ``next_attempt_at``, but never later than
    ``RETRY_MAX_SECONDS`` after the blob landed in failed/ (its server-set last-modified
    time), so a tampered far-future time cannot park a blob for ever."""
    due = parse_time(meta.get("next_attempt_at"))
    if due is None or moved_at is None:
        return due
    latest = moved_at.astimezone(UTC) + timedelta(seconds=settings.retry.max_seconds)
    return min(due, latest)


def _current_versions(settings: Settings) -> dict[str, str]:
    """Dataset name -> version. A broken dataset file maps to "" (the version its files were
    failed with), so they stay in failed/ until the file is fixed, and the other datasets'
    failures are judged as usual."""
    try:
        good, broken = scan_datasets(settings.datasets_dir)
    except Exception:
        log.exception("could not read the dataset definitions; data failures stay in failed/")
        return {}
    return {**dict.fromkeys(broken, ""), **{n: dataset_version(d) for n, d in good.items()}}


def sweep(settings: Settings, *, now: datetime | None = None, force: bool = False,
          container: ContainerClient | None = None) -> SweepReport:
    now = now or storage.now_utc()
    now = now.replace(tzinfo=UTC) if now.tzinfo is None else now
    cc = container or storage.container_client(settings)
    versions = _current_versions(settings)
    report = SweepReport()
    for item in cc.list_blobs(name_starts_with=f"{storage.FAILED}/", include=["metadata"]):
        name = item.name
        reason = names.problem(name, storage.FAILED)
        if reason is not None:
            # Any call with this name could address another blob: leave it where it is.
            report.refused.append(name)
            log.error("%s: refused, not moved: %s", urllib.parse.quote(name[:200], safe="/ ._-~"),
                      reason, extra={"run_uuid": "", "dataset": "", "blob": name})
            continue
        try:
            _sweep_one(cc, item, settings, now, force, versions, report)
        except Exception as exc:  # one blob's failure never stops the sweep
            report.errors.append(name)
            log.error("%s: could not be swept (%s): %s; it stays in failed/ for the next "
                      "sweep", name, type(exc).__name__, classify(exc).message,
                      extra={"run_uuid": "", "dataset": "", "blob": name})
    return report


def _sweep_one(cc: ContainerClient, item: Any, settings: Settings, now: datetime, force: bool,
               versions: dict[str, str], report: SweepReport) -> None:
    meta = dict(item.metadata or {})
    name = item.name
    # a blob in failed/ failed at least once, whatever its metadata says
    attempts = max(1, parse_attempts(meta.get("attempts"), settings.retry.max_attempts))
    route = storage.route(name, prefix=storage.FAILED)
    home = f"{storage.INCOMING}/{route.dataset}/{route.rel}"
    source_path = storage.unquote_meta(meta.get("source_path", "")) or home
    if names.problem(source_path, storage.INCOMING) is not None:
        source_path = home  # tampered source_path: back to where its own name says
    if attempts >= settings.retry.max_attempts:  # forced or not: `requeue` resets it
        target, bucket = route.deadletter(), report.deadlettered
    elif force:
        target, bucket = source_path, report.retried
    elif meta.get("kind") == "data":
        changed = (meta.get("app_version") != __version__
                   # storage drops empty metadata: a missing version is ""
                   or (meta.get("dataset_version") or "") != versions.get(route.dataset))
        if not changed:
            report.kept.append(name)
            return
        target, bucket = source_path, report.retried
    else:
        due = next_attempt(meta, getattr(item, "last_modified", None), settings)
        if due is not None and due > now:
            report.waiting.append(name)
            return
        target, bucket = source_path, report.retried
    # the retry state travels with the blob, sound whatever the metadata said
    fix = {"attempts": str(attempts)} if meta.get("attempts") != str(attempts) else None
    if _move_leased(cc, name, item.etag, target, report, fix):
        target = report.last_target
        bucket.append(target)
        fields = {"run_uuid": storage.run_uuid_of(meta), "dataset": route.dataset,
                  "blob": source_path}
        if bucket is report.deadlettered:
            log.error("%s dead-lettered after %d attempts; last error: %s", source_path,
                      attempts, storage.unquote_meta(meta.get("reason", "")), extra=fields)
        else:
            log.info("%s back to %s (attempt %d next)", name, target, attempts + 1,
                     extra=fields)


def _move_leased(cc: ContainerClient, name: str, etag: str, target: str,
                 report: SweepReport, metadata: dict[str, str] | None = None) -> bool:
    """Move under the source's lease: of two sweeps at once, one moves, the other is told
    the blob is busy or gone."""
    moved = moves.move(cc, name, target, etag=etag, metadata=metadata,
                         unique_suffix=etag.strip('"')[-8:])
    if moved is None:
        report.busy.append(name)
        return False
    report.last_target = moved
    return True
