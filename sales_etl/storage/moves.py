"""Moving one blob version: ETag-safe, lease-serialised, never overwriting, never losing.

``move(container, source, target, etag=...)`` moves exactly the ``etag`` version of
``source`` to ``target``, or to a name beside it when ``target`` is taken
(``<file>~<version tag>``, see ``candidates``), and returns where it landed, or None when
the move is not the caller's to make (the source changed or vanished; another mover holds
it). The contract, kept by every path through this module:

* a lease on the source serialises movers (a crashed mover's lease lapses after
  ``LEASE_SECONDS``; a live one renews it while its copy runs);
* every copy is conditional on its destination not existing (If-None-Match: *), and is
  verified (the service's copy source, status and size) before the source is deleted;
* the source is deleted with the lease and only if it is still that version;
* a mover that died between copy and delete left a copy that the next mover of the same
  version recognises (``moved_from`` / ``moved_from_etag`` metadata + the copy source the
  service recorded) and adopts: one copy, never two.

Storage calls only: the folder names come from ``container``, metadata quoting from
``stages.names``.
"""

from __future__ import annotations

import contextlib
import time
import urllib.parse
import uuid
from typing import Any

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import BlobClient, BlobLeaseClient, ContainerClient

from sales_etl.core.errors import TransientError
from sales_etl.stages.names import quote_meta, unquote_meta
from sales_etl.storage.container import FAILED, properties

LEASE_SECONDS = 15  # a mover's hold on the source blob (renewed while a copy runs)
MOVED_FROM, MOVED_FROM_ETAG = "moved_from", "moved_from_etag"  # on every moved copy


def version_tag(etag: str) -> str:
    """A short, name-safe tag of one blob version: the hex digits of its ETag."""
    digits = "".join(ch for ch in etag.strip('"') if ch.isalnum())
    if digits[:2].lower() == "0x":
        digits = digits[2:]
    return digits[-16:] or "v"


def beside(name: str, suffix: str) -> str:
    """``name`` with ``~suffix`` before its extension."""
    head, dot, ext = name.rpartition(".")
    if not dot or "/" in ext or not head or head.endswith("/"):
        return f"{name}~{suffix}"
    return f"{head}~{suffix}.{ext}"


def candidates(target: str, etag: str, last_resort: str | None = None) -> list[str]:
    """Where a version may land, in order: the plain name, then a name tagged with the
    source version (the same for every mover of that version, so a re-run after a crash
    finds the copy it already made), then one tagged with ``last_resort`` (a run UUID's
    prefix, or random) for the one-in-billions case of two versions with the same tag."""
    tag = version_tag(etag)
    return [target, beside(target, tag), beside(target, f"{tag}-{last_resort or uuid.uuid4().hex[:8]}")]


def url_path(url: str) -> str:
    """The blob path of a URL (a copy source as the service recorded it, or a client's)."""
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path)


def _is_copy_of(props: Any, src: BlobClient, source: str, etag: str, size: int) -> bool:
    """True if ``props`` (a destination) is a server-side copy of exactly this version of
    the source: made by a mover of this version (its metadata), from this blob (the copy
    source the service recorded), not failed or aborted, and of the right size."""
    meta = props.metadata or {}
    copy = props.copy
    return (
        meta.get(MOVED_FROM) == quote_meta(source)
        and meta.get(MOVED_FROM_ETAG) == version_tag(etag)
        and copy is not None
        and copy.source is not None
        and url_path(copy.source) == url_path(src.url)
        and copy.status in ("success", "pending")
        and (copy.status == "pending" or props.size == size)
    )


def _acquire(src: BlobClient, etag: str, wait: float) -> Any:
    """A lease on exactly the ``etag`` version of the source, or None if it changed or
    vanished. Another mover's lease is waited out for up to ``wait`` seconds (a dead
    mover's lease expires after LEASE_SECONDS); still leased after that: TransientError."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return src.acquire_lease(
                lease_duration=LEASE_SECONDS, etag=etag, match_condition=MatchConditions.IfNotModified
            )
        except (ResourceNotFoundError, ResourceModifiedError):
            return None
        except HttpResponseError as exc:
            if exc.status_code == 412:
                return None
            if exc.status_code != 409:
                raise
            if time.monotonic() >= deadline:
                if wait <= 0:
                    return None
                raise TransientError(
                    f"{src.blob_name}: leased by another mover for over {wait:.0f} s",
                    code="storage_transient",
                ) from exc
        time.sleep(0.5)


class _Lease:
    """The mover's lease, renewed while a copy runs so it never lapses mid-move."""

    def __init__(self, lease: Any) -> None:
        self.lease = lease
        self._renewed = time.monotonic()

    def keep(self) -> None:
        if time.monotonic() - self._renewed > LEASE_SECONDS / 3:
            self.lease.renew()
            self._renewed = time.monotonic()


def _await_copy(dst: BlobClient, copy_id: str | None, name: str, lease: _Lease, timeout: float) -> Any:
    """Wait for the copy into ``dst`` to finish; return its properties once verified."""
    deadline = time.monotonic() + timeout
    while True:
        props = dst.get_blob_properties()
        copy = props.copy
        if copy_id is not None and (copy is None or copy.id != copy_id):
            raise TransientError(
                f"the copy at {name} is not this mover's (replaced)", code="storage_transient"
            )
        status = copy.status if copy is not None else None
        if status != "pending":
            if status != "success":
                raise TransientError(f"copy to {name} ended as {status}", code="storage_transient")
            return props
        if time.monotonic() > deadline:
            raise TransientError(
                f"copy to {name} did not finish in {timeout:.0f} s", code="storage_transient"
            )
        lease.keep()
        time.sleep(0.5)


def _place_copy(
    container: ContainerClient,
    src: BlobClient,
    source: str,
    props: Any,
    names: list[str],
    metadata: dict[str, str],
    lease: _Lease,
    timeout: float,
) -> str:
    """Copy the leased source version to the first free name of ``names`` and verify it;
    or adopt a verified copy of this very version that an earlier mover (one that died
    before deleting the source) left at one of them. Never overwrites: each copy is
    conditional on its destination not existing (If-None-Match: *)."""
    etag, size = props.etag, props.size
    for name in names:
        dst = container.get_blob_client(name)
        existing = properties(dst)
        if existing is not None:
            if _is_copy_of(existing, src, source, etag, size):
                done = _await_copy(dst, existing.copy.id, name, lease, timeout)
                if done.size == size:
                    return name
            continue
        try:
            copy = dst.start_copy_from_url(
                src.url,
                metadata=metadata,
                source_etag=etag,
                source_match_condition=MatchConditions.IfNotModified,
                match_condition=MatchConditions.IfMissing,
            )  # If-None-Match: *
        except ResourceExistsError:
            continue  # taken since we looked: the next name
        except HttpResponseError as exc:
            if exc.status_code in (409, 412) and dst.exists():
                continue
            raise
        done = _await_copy(dst, str(copy.get("copy_id") or "") or None, name, lease, timeout)
        if done.size != size:
            raise TransientError(f"copy of {source} to {name} has the wrong size", code="storage_transient")
        return name
    raise TransientError(f"{source}: no free destination among {', '.join(names)}", code="storage_transient")


def _drop_orphans(
    container: ContainerClient, src: BlobClient, source: str, props: Any, elsewhere: list[str]
) -> None:
    """Delete copies of this very source version that a mover which died before deleting
    the source left at another destination (e.g. failed/ before a retry that loaded it).
    Safe: the source is still here at that version, under our lease, so no move of it
    completed, and only a verified copy of exactly this version matches."""
    for target in elsewhere:
        for name in candidates(target, props.etag)[:2]:
            dst = container.get_blob_client(name)
            existing = properties(dst)
            if existing is None:
                continue
            if (
                existing.copy is not None
                and existing.copy.status == "success"
                and _is_copy_of(existing, src, source, props.etag, props.size)
            ):
                with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
                    dst.delete_blob(etag=existing.etag, match_condition=MatchConditions.IfNotModified)


def _drop_stale_origin(container: ContainerClient, source: str, props: Any) -> None:
    """If the source was put here by the sweep (a copy from failed/) and that failed/ blob
    is still there at the very version copied (the sweep died between copy and delete),
    delete it: its content is this blob's, which is now moved. Its dead mover's lease is
    broken first (a live one would only find the blob gone and report it busy). Trusts
    only the copy source the service recorded, checked against the metadata."""
    meta, copy = props.metadata or {}, props.copy
    origin = unquote_meta(meta.get(MOVED_FROM, ""))
    if not origin.startswith(f"{FAILED}/") or copy is None or copy.source is None:
        return
    blob = container.get_blob_client(origin)
    if url_path(copy.source) != url_path(blob.url):
        return
    stale = properties(blob)
    if stale is None:
        return
    if version_tag(stale.etag) != meta.get(MOVED_FROM_ETAG):
        return
    with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError, HttpResponseError):
        if stale.lease.state == "leased":
            BlobLeaseClient(blob).break_lease(lease_break_period=0)
        blob.delete_blob(etag=stale.etag, match_condition=MatchConditions.IfNotModified)


def move(
    container: ContainerClient,
    source: str,
    target: str,
    *,
    etag: str,
    metadata: dict[str, str] | None = None,
    unique_suffix: str | None = None,
    timeout: float = 300.0,
    wait: float = 0.0,
    orphans: list[str] | None = None,
    drop_origin: bool = False,
    drop_metadata: tuple[str, ...] = (),
) -> str | None:
    """Move exactly the ``etag`` version of ``source`` to ``target``, or to a name beside
    it when ``target`` is taken (see ``candidates``; ``unique_suffix`` is the last
    resort's tag). Returns the name moved to, or None when the move is not this caller's
    to make: the source changed or vanished (a new upload under the same name stays in
    place, to be processed in its turn), or, with ``wait`` 0, another mover holds its
    lease. With ``wait`` > 0, another mover's lease is waited out that long (a crashed
    mover's lease expires), then TransientError. ``orphans``: other destinations (e.g.
    failed/ when moving to processed/) where a mover of this version that died between
    copy and delete may have left a copy: such copies are deleted (see ``_drop_orphans``).
    ``drop_origin``: also delete the failed/ blob this one was copied from by a sweep that
    died before deleting it (see ``_drop_stale_origin``). The copy's metadata is the
    source's, updated with ``metadata``, without the keys in ``drop_metadata``.

    Never overwrites and never loses: a lease on the source serialises movers; the copy
    is conditional on its destination not existing; the source is deleted, with the lease
    and only if it is still that version, once its own copy is complete and verified. A
    mover that died between copy and delete left a copy that the next mover of the same
    version recognises (metadata + the service's copy source) and adopts: one copy.
    """
    src = container.get_blob_client(source)
    raw_lease = _acquire(src, etag, wait)
    if raw_lease is None:
        return None
    lease = _Lease(raw_lease)
    deleted = False
    try:
        props = src.get_blob_properties(lease=raw_lease)
        if props.etag.strip('"') != etag.strip('"'):
            return None
        meta = dict(props.metadata or {})
        meta.update(metadata or {})
        for key in drop_metadata:
            meta.pop(key, None)
        meta[MOVED_FROM], meta[MOVED_FROM_ETAG] = quote_meta(source), version_tag(props.etag)
        moved = _place_copy(
            container, src, source, props, candidates(target, props.etag, unique_suffix), meta, lease, timeout
        )
        _drop_orphans(container, src, source, props, orphans or [])
        if drop_origin:
            _drop_stale_origin(container, source, props)
        lease.keep()
        try:
            src.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified, lease=raw_lease)
        except (ResourceNotFoundError, ResourceModifiedError):
            return None
        deleted = True
        return moved
    finally:
        if not deleted:
            with contextlib.suppress(HttpResponseError):
                raw_lease.release()
