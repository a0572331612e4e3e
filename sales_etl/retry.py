"""The retry sweep (timer trigger, and ``sales-etl retry-failed``).

Retry state lives on the blob (metadata written when it was moved to failed/), so the
sweep needs storage only and works while the database is down:

* transient failures go back to incoming/ once ``next_attempt_at`` has passed
  (exponential backoff from the attempt count);
* data failures go back only when the dataset definition or the app version changed since
  the failure, or when forced;
* a blob that used up ``RETRY_MAX_ATTEMPTS`` goes to deadletter/ with an error log line.

Each move holds a short lease on the failed blob, so two sweeps never move one blob twice.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime

from azure.storage.blob import ContainerClient

from . import __version__, storage
from .datasets import scan_datasets
from .settings import Settings

log = logging.getLogger("sales_etl")


@dataclass
class SweepReport:
    retried: list[str] = field(default_factory=list)
    deadlettered: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # data failures with nothing changed
    busy: list[str] = field(default_factory=list)  # moved or leased by another sweep
    last_target: str = ""


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _current_versions(settings: Settings) -> dict[str, str]:
    """Dataset name -> version. A broken dataset file maps to "" (the version its files were
    failed with), so they stay in failed/ until the file is fixed, and the other datasets'
    failures are judged as usual."""
    from .pipeline import dataset_version

    try:
        good, broken = scan_datasets(settings.datasets_dir)
    except Exception:
        log.exception("could not read the dataset definitions; data failures stay in failed/")
        return {}
    return {**dict.fromkeys(broken, ""), **{n: dataset_version(d) for n, d in good.items()}}


def sweep(settings: Settings, *, now: datetime | None = None, force: bool = False,
          container: ContainerClient | None = None) -> SweepReport:
    now = now or storage.now_utc()
    cc = container or storage.container_client(settings)
    versions = _current_versions(settings)
    report = SweepReport()
    for item in cc.list_blobs(name_starts_with=f"{storage.FAILED}/", include=["metadata"]):
        meta = item.metadata or {}
        name = item.name
        attempts = int(meta.get("attempts", "1") or 1)
        route = storage.route(name, prefix=storage.FAILED)
        source_path = storage.unquote_meta(meta.get("source_path", "")) or (
            f"{storage.INCOMING}/{route.dataset}/{route.rel}")
        if attempts >= settings.retry.max_attempts and not force:
            target, bucket = route.deadletter(), report.deadlettered
        elif force:
            target, bucket = source_path, report.retried
        elif meta.get("kind") == "data":
            changed = (meta.get("app_version") != __version__
                       # storage drops empty metadata: a missing version is ""
                       or (meta.get("dataset_version") or "") != versions.get(route.dataset))
            if not changed:
                report.kept.append(name)
                continue
            target, bucket = source_path, report.retried
        else:
            due = _parse_time(meta.get("next_attempt_at"))
            if due is not None and due > now:
                report.waiting.append(name)
                continue
            target, bucket = source_path, report.retried
        if not storage.safe_parts(target) or storage.safe_parts(target)[0] not in storage.FOLDERS:
            target = f"{storage.INCOMING}/{route.dataset}/{route.rel}"
        if _move_leased(cc, name, item.etag, target, report):
            target = report.last_target
            bucket.append(target)
            fields = {"run_id": meta.get("run_id", ""), "dataset": route.dataset,
                      "blob": source_path}
            if bucket is report.deadlettered:
                log.error("%s dead-lettered after %d attempts; last error: %s", source_path,
                          attempts, storage.unquote_meta(meta.get("reason", "")), extra=fields)
            else:
                log.info("%s back to %s (attempt %d next)", name, target, attempts + 1,
                         extra=fields)
    return report


def _move_leased(cc: ContainerClient, name: str, etag: str, target: str,
                 report: SweepReport) -> bool:
    """Move under the source's lease: of two sweeps at once, one moves, the other is told
    the blob is busy or gone."""
    moved = storage.move(cc, name, target, etag=etag, unique_suffix=etag.strip('"')[-8:])
    if moved is None:
        report.busy.append(name)
        return False
    report.last_target = moved
    return True
