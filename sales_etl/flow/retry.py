"""The retry sweep (timer trigger, and ``sales-etl retry-failed``): I/O over the
decisions of ``retrypolicy``.

Retry state lives on the blob (metadata written when it was moved to failed/), so the
sweep needs storage only and works while the database is down. For each blob in failed/
the sweep lists its metadata, asks ``retrypolicy.decide`` (the rules: dead-letter after
``RETRY_MAX_ATTEMPTS``, forced, data failures when the dataset or the app changed,
transient ones once ``next_attempt_at`` passed), and carries the decision out: back to
where the blob first landed in incoming/ (``source_path``, unless tampered with), to
deadletter/ with an error log line, or nowhere (``kept``, ``waiting``).

Each move holds a short lease on the failed blob, so two sweeps never move one blob twice.
A failed/ blob whose very source version is still in incoming/ (its mover died between
copy and delete) is left for that source's next invocation (``busy``): sent back, the
file would go round twice.
A name that escapes failed/ is refused and left alone; one blob's failure never stops the
sweep (``errors``).
"""

from __future__ import annotations

import logging
import urllib.parse
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sales_etl import __version__
from sales_etl.config.settings import Settings
from sales_etl.core.errors import classify
from sales_etl.datasets.reader import dataset_version, scan_datasets
from sales_etl.flow.retrypolicy import Action, as_utc, decide
from sales_etl.stages import names
from sales_etl.storage import container as storage
from sales_etl.storage import moves

if TYPE_CHECKING:  # annotations only: the storage edge holds the SDK
    from azure.storage.blob import ContainerClient

log = logging.getLogger("sales_etl")


@dataclass
class SweepReport:
    retried: list[str] = field(default_factory=list)
    deadlettered: list[str] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # data failures, nothing changed (or unknown)
    busy: list[str] = field(default_factory=list)  # moved or leased by another sweep
    refused: list[str] = field(default_factory=list)  # names that escape failed/: untouched
    errors: list[str] = field(default_factory=list)  # this blob's move failed; the rest went on
    last_target: str = ""


def _current_versions(settings: Settings) -> dict[str, str]:
    """Dataset name -> version. A broken dataset file maps to "" (the version its files were
    failed with), so they stay in failed/ until the file is fixed, and the other datasets'
    failures are judged as usual. A dataset missing here (no definition, or the definitions
    could not be read: then the map is empty) has no known version: its data failures stay
    unless the app changed (``retrypolicy.decide``)."""
    try:
        good, broken = scan_datasets(settings.datasets_dir)
    except Exception:
        log.exception("could not read the dataset definitions; data failures stay in failed/")
        return {}
    return {**dict.fromkeys(broken, ""), **{n: dataset_version(d) for n, d in good.items()}}


def sweep(
    settings: Settings,
    *,
    now: datetime | None = None,
    force: bool = False,
    container: ContainerClient | None = None,
) -> SweepReport:
    now = as_utc(now or storage.now_utc())
    cc = container or storage.container_client(settings)
    versions = _current_versions(settings)
    report = SweepReport()
    for item in cc.list_blobs(name_starts_with=f"{storage.FAILED}/", include=["metadata", "copy"]):
        name = item.name
        reason = names.problem(name, storage.FAILED)
        if reason is not None:
            # Any call with this name could address another blob: leave it where it is.
            report.refused.append(name)
            log.error(
                "%s: refused, not moved: %s",
                urllib.parse.quote(name[:200], safe="/ ._-~"),
                reason,
                extra={"run_uuid": "", "dataset": "", "blob": name},
            )
            continue
        try:
            _sweep_one(cc, item, settings, now, force, versions, report)
        except Exception as exc:  # one blob's failure never stops the sweep
            report.errors.append(name)
            log.error(
                "%s: could not be swept (%s): %s; it stays in failed/ for the next sweep",
                name,
                type(exc).__name__,
                classify(exc).message,
                extra={"run_uuid": "", "dataset": "", "blob": name},
            )
    return report


def _sweep_one(
    cc: ContainerClient,
    item: Any,
    settings: Settings,
    now: datetime,
    force: bool,
    versions: dict[str, str],
    report: SweepReport,
) -> None:
    meta = dict(item.metadata or {})
    name = item.name
    if _origin_in_place(cc, item, meta):
        # A mover died between its copy to failed/ and deleting the source: the source is
        # still in incoming/, and its own next invocation settles this copy (adopts it if
        # it fails again, deletes it if it loads). Sent back now, the file would go round
        # twice (a second blob beside the first in incoming/, then in processed/).
        report.busy.append(name)
        log.info(
            "%s: its source is still in incoming/ (a mover died before deleting it);"
            " left for that blob's next invocation",
            name,
            extra={"run_uuid": storage.run_uuid_of(meta), "dataset": "", "blob": name},
        )
        return
    route = storage.route(name, prefix=storage.FAILED)
    decision = decide(
        meta,
        last_modified=getattr(item, "last_modified", None),
        now=now,
        app_version=__version__,
        dataset_version=versions.get(route.dataset),
        force=force,
        policy=settings.retry,
    )
    if decision.action is Action.KEEP:
        report.kept.append(name)
        return
    if decision.action is Action.WAIT:
        report.waiting.append(name)
        return
    home = f"{storage.INCOMING}/{route.dataset}/{route.rel}"
    source_path = names.unquote_meta(meta.get("source_path", "")) or home
    if names.problem(source_path, storage.INCOMING) is not None:
        source_path = home  # tampered source_path: back to where its own name says
    deadletter = decision.action is Action.DEADLETTER
    target = route.deadletter() if deadletter else source_path
    # the retry state travels with the blob, sound whatever the metadata said
    if not _move_leased(cc, name, item.etag, target, report, decision.repair):
        return
    target = report.last_target
    fields = {"run_uuid": storage.run_uuid_of(meta), "dataset": route.dataset, "blob": source_path}
    if deadletter:
        report.deadlettered.append(target)
        log.error(
            "%s dead-lettered after %d attempts; last error: %s",
            source_path,
            decision.attempts,
            names.unquote_meta(meta.get("reason", "")),
            extra=fields,
        )
    else:
        report.retried.append(target)
        log.info("%s back to %s (attempt %d next)", name, target, decision.attempts + 1, extra=fields)


def _origin_in_place(cc: ContainerClient, item: Any, meta: dict[str, str]) -> bool:
    """True if the very version this failed/ blob was copied from is still in incoming/:
    its metadata names it (``moved_from``, ``moved_from_etag``) and the copy source the
    service recorded agrees, so tampered metadata alone cannot hold a blob back."""
    origin = names.unquote_meta(meta.get(moves.MOVED_FROM) or "")
    tag = meta.get(moves.MOVED_FROM_ETAG) or ""
    if (
        not tag
        or not origin.startswith(f"{storage.INCOMING}/")
        or names.problem(origin, storage.INCOMING) is not None
    ):
        return False
    copy = getattr(item, "copy", None)
    source = copy.source if copy is not None else None
    blob = cc.get_blob_client(origin)
    if not source or moves.url_path(source) != moves.url_path(blob.url):
        return False
    props = storage.properties(blob)
    return props is not None and moves.version_tag(props.etag) == tag


def _move_leased(
    cc: ContainerClient,
    name: str,
    etag: str,
    target: str,
    report: SweepReport,
    metadata: dict[str, str] | None = None,
) -> bool:
    """Move under the source's lease: of two sweeps at once, one moves, the other is told
    the blob is busy or gone."""
    moved = moves.move(cc, name, target, etag=etag, metadata=metadata, unique_suffix=etag.strip('"')[-8:])
    if moved is None:
        report.busy.append(name)
        return False
    report.last_target = moved
    return True
