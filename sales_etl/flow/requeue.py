"""``sales-etl requeue``: an operator sends blobs from failed/ or deadletter/ back to
incoming/ (to the path they first landed on), with their retry state reset, and each move
recorded in the ledger (trigger ``requeue``, status ``skipped``, reason ``requeued``: a row
that loaded nothing and says where the blob went).

Names are matched against the blob path (``failed/sales/x.csv``), its path below the
folder (``sales/x.csv``), the path it first landed on (``incoming/sales/x.csv``) or the file
name alone (``x.csv``). A blob that changed or moved meanwhile is left alone (``busy``).
"""

from __future__ import annotations

import logging
import urllib.parse
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sales_etl.config.settings import Settings
from sales_etl.core.errors import classify
from sales_etl.db import ledger
from sales_etl.db.connection import connect
from sales_etl.db.ledger import RunRecord
from sales_etl.flow.retrypolicy import parse_attempts
from sales_etl.stages import names as names_
from sales_etl.storage import container as storage
from sales_etl.storage import moves
from sales_etl.storage.blobpath import pasted_name

if TYPE_CHECKING:  # annotations only: the storage edge holds the SDK
    from azure.storage.blob import ContainerClient

log = logging.getLogger("sales_etl")
SOURCES = (storage.FAILED, storage.DEADLETTER)


@dataclass
class Requeued:
    source: str
    target: str
    attempts: int
    reason: str


@dataclass
class RequeueReport:
    moved: list[Requeued] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # unsafe names: left where they are
    unmatched: list[str] = field(default_factory=list)  # names given that matched no blob
    unrecorded: str = ""  # why the ledger rows could not be written, if they could not


def _keys(name: str, meta: dict[str, str], folder: str) -> set[str]:
    rel = name[len(folder) + 1 :]
    source = names_.unquote_meta(meta.get("source_path", ""))
    return {name, rel, rel.rsplit("/", 1)[-1], source}


def _target(name: str, meta: dict[str, str], folder: str) -> str:
    route = storage.route(name, prefix=folder)
    default = f"{storage.INCOMING}/{route.dataset}/{route.rel}"
    source = names_.unquote_meta(meta.get("source_path", ""))
    # a source_path that is not confined to incoming/ is refused, never repaired (as the sweep)
    return source if source and names_.problem(source, storage.INCOMING) is None else default


def requeue(
    settings: Settings,
    names: Iterable[str] = (),
    *,
    everything: bool = False,
    folders: Iterable[str] = SOURCES,
    container: ContainerClient | None = None,
) -> RequeueReport:
    """Move the named blobs (or, with ``everything``, all) of ``folders`` to incoming/."""
    wanted = {pasted_name(n, settings.container) for n in names if n.strip()}
    cc = container or storage.container_client(settings)
    report = RequeueReport()
    found: set[str] = set()
    records: list[RunRecord] = []
    for folder in folders:
        for item in cc.list_blobs(name_starts_with=f"{folder}/", include=["metadata"]):
            meta = dict(item.metadata or {})
            keys = _keys(item.name, meta, folder)
            if not everything and not (keys & wanted):
                continue
            found |= keys & wanted
            if names_.problem(item.name, folder) is not None:
                # Any call with this name could address another blob (see names.py)
                report.refused.append(item.name)
                log.error(
                    "%s: refused, not requeued: %s",
                    urllib.parse.quote(item.name[:200], safe="/ ._-~"),
                    names_.problem(item.name, folder),
                )
                continue
            target = _target(item.name, meta, folder)
            reset = {
                "attempts": "0",
                "requeued_from": names_.quote_meta(item.name),
                "requeued_at": storage.now_utc().isoformat(timespec="seconds"),
            }
            moved = moves.move(
                cc, item.name, target, etag=item.etag, metadata=reset, unique_suffix=item.etag.strip('"')[-8:]
            )
            if moved is None:
                report.busy.append(item.name)
                continue
            # untrusted: clamped like the sweep's (a huge count would fail the ledger rows)
            attempts = parse_attempts(meta.get("attempts"), settings.retry.max_attempts)
            reason = names_.unquote_meta(meta.get("reason", ""))
            report.moved.append(Requeued(item.name, moved, attempts, reason))
            route = storage.route(moved)
            records.append(
                RunRecord(
                    dataset=route.dataset,
                    blob_path=moved,
                    trigger="requeue",
                    status="skipped",
                    reason_code="requeued",
                    attempt=attempts,
                    seconds=0.0,
                    error=(
                        f"requeued by an operator from {item.name} to {moved}; retry state "
                        f"reset after {attempts} attempt(s)" + (f"; last error: {reason}" if reason else "")
                    )[:2000],
                )
            )
    report.unmatched = sorted(wanted - found)
    if records:
        report.unrecorded = _record(settings, records)
    return report


def _record(settings: Settings, records: list[RunRecord]) -> str:
    """Write the ledger rows; on failure say why (the moves stand: storage is the truth of
    where a blob is, the ledger its history)."""
    try:
        conn = connect(settings.require_database(), autocommit=False)
        try:
            with conn.cursor() as cur:
                for rec in records:
                    ledger.insert(cur, rec)
            conn.commit()
        finally:
            conn.close()
    except Exception as exc:
        error = classify(exc)
        log.warning("requeue: could not record %d move(s) in the ledger: %s", len(records), error.message)
        return error.message
    return ""
