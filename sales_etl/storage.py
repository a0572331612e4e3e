"""The blob adapter: clients, range streaming, ETag-safe moves, metadata, paths.

Container layout::

    incoming/[<dataset>/]<file>      files to load (no dataset folder means "sales")
    processed/<dataset>/YYYY/MM/DD/<file>   (the day the version landed)
    failed/<dataset>/<file>          with the reason and retry state in metadata
    deadletter/<dataset>/<file>      gave up after RETRY_MAX_ATTEMPTS
    rejected/<dataset>/<file>.<run id>.rejects.csv

A destination that is taken is never overwritten: the file lands beside it as
``<file>~<version tag>`` (see ``move``).
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import time
import urllib.parse
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.storage.blob import (
    BlobClient,
    BlobLeaseClient,
    BlobServiceClient,
    ContainerClient,
    ExponentialRetry,
)

from .datasets import DEFAULT_DATASET
from .errors import ConfigError, TransientError
from .settings import Settings, StorageSettings

INCOMING, PROCESSED, FAILED, DEADLETTER, REJECTED = (
    "incoming", "processed", "failed", "deadletter", "rejected")
FOLDERS = (INCOMING, PROCESSED, FAILED, DEADLETTER, REJECTED)
RANGE_BYTES = 2 << 20
MAX_NAME = 1024  # Azure's limit on a blob name
LEASE_SECONDS = 15  # a mover's hold on the source blob (renewed while a copy runs)


def service_client(storage: StorageSettings) -> BlobServiceClient:
    """The package's own client, from the same setting the trigger uses."""
    # Short retries: the sweep retries with real backoff; an invocation should fail fast.
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3)
    if storage.connection_string is not None:
        return BlobServiceClient.from_connection_string(storage.connection_string.get(),
                                                        retry_policy=retry)
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    credential: Any
    if storage.credential and storage.credential.lower() == "managedidentity":
        credential = ManagedIdentityCredential(client_id=storage.client_id)
    else:
        credential = DefaultAzureCredential(
            managed_identity_client_id=storage.client_id) if storage.client_id else DefaultAzureCredential()
    assert storage.service_uri is not None
    return BlobServiceClient(account_url=storage.service_uri, credential=credential,
                             retry_policy=retry)


def container_client(settings: Settings) -> ContainerClient:
    return service_client(settings.require_storage()).get_container_client(settings.container)


def init_storage(settings: Settings) -> bool:
    """Create the container if needed; True if it was created."""
    try:
        container_client(settings).create_container()
    except ResourceExistsError:
        return False
    return True


# ----------------------------------------------------------------------------- paths


@dataclass(frozen=True)
class Route:
    dataset: str
    rel: str  # the file's path below its dataset folder (safe: no '.', '..' or empty parts)

    def processed(self, when: datetime) -> str:
        return f"{PROCESSED}/{self.dataset}/{when:%Y/%m/%d}/{self.rel}"

    def failed(self) -> str:
        return f"{FAILED}/{self.dataset}/{self.rel}"

    def deadletter(self) -> str:
        return f"{DEADLETTER}/{self.dataset}/{self.rel}"

    def rejects(self, run_uuid: str) -> str:
        """One file per run (its run id in the name): a re-sent file, or the same name in
        another folder, never replaces an earlier run's rejects."""
        return f"{REJECTED}/{self.dataset}/{self.rel}.{safe_tag(run_uuid)}.rejects.csv"


def safe_tag(text: str) -> str:
    """``text`` reduced to letters, digits and '-' (for a run id inside a blob name)."""
    return "".join(ch for ch in text if ch.isascii() and (ch.isalnum() or ch == "-")) or "x"


def safe_parts(path: str) -> list[str]:
    """Path segments with '.', '..' and empty ones dropped: nothing escapes its prefix."""
    return [p for p in path.replace("\\", "/").split("/") if p not in ("", ".", "..")]


def route(blob_name: str, prefix: str = INCOMING) -> Route:
    """``incoming/<dataset>/<file>`` is that dataset; ``incoming/<file>`` is sales."""
    parts = safe_parts(blob_name)
    if parts and parts[0] == prefix:
        parts = parts[1:]
    if not parts:
        return Route(DEFAULT_DATASET, "unnamed")
    if len(parts) == 1:
        return Route(DEFAULT_DATASET, parts[0])
    return Route(parts[0], "/".join(parts[1:]))


def quote_meta(value: str, limit: int = 1024) -> str:
    """Blob metadata must be ASCII: percent-encode, and keep it short."""
    return urllib.parse.quote(value, safe=" /:._-=,()'<>@#")[:limit]


def quote_meta_path(value: str, limit: int = 2048) -> str:
    """A blob name for metadata, whole or not at all ("": storage drops it): a truncated
    name is another name (a sweep would send the blob back under it). A reader falls back
    to the name the blob's own path implies."""
    quoted = quote_meta(value, limit + 1)
    return quoted if len(quoted) <= limit else ""


def unquote_meta(value: str) -> str:
    return urllib.parse.unquote(value)


# ----------------------------------------------------------------------------- reading


class RangeReader(io.RawIOBase):
    """Reads one blob version in ranges (If-Match its ETag): memory holds two ranges at
    most, and the next range downloads while the caller parses the current one."""

    def __init__(self, blob: BlobClient, etag: str, size: int, range_bytes: int | None = None):
        self._blob = blob
        self._etag = etag
        self._size = size
        self._range = range_bytes or RANGE_BYTES
        self._next_offset = 0
        self._buffer = memoryview(b"")
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-range")
        self._pending: Future[bytes] | None = None
        self._prefetch()

    def _fetch(self, offset: int, length: int) -> bytes:
        downloader = self._blob.download_blob(
            offset=offset, length=length, etag=self._etag,
            match_condition=MatchConditions.IfNotModified, max_concurrency=1,
            # The stored bytes, always: with ``Content-Encoding: gzip`` the HTTP stack would
            # otherwise gunzip each range on its own; extract.py decides by content.
            decompress=False)
        return downloader.readall()

    def _prefetch(self) -> None:
        if self._next_offset >= self._size:
            self._pending = None
            return
        length = min(self._range, self._size - self._next_offset)
        # In the caller's context: the worker finds the invocation id of a log record there
        self._pending = self._pool.submit(contextvars.copy_context().run, self._fetch,
                                          self._next_offset, length)
        self._next_offset += length

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if not self._buffer:
            if self._pending is None:
                return 0
            data = self._pending.result()
            self._buffer = memoryview(data)
            self._prefetch()
        n = min(len(buffer), len(self._buffer))
        buffer[:n] = self._buffer[:n]
        self._buffer = self._buffer[n:]
        return n

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        super().close()


def open_blob(blob: BlobClient, etag: str, size: int) -> BinaryIO:
    return RangeReader(blob, etag, size)  # type: ignore[return-value]


# ----------------------------------------------------------------------------- moving


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
    finds the copy it already made), then one tagged with ``last_resort`` (a run id, or
    random) for the one-in-billions case of two versions with the same tag."""
    tag = version_tag(etag)
    return [target, beside(target, tag),
            beside(target, f"{tag}-{last_resort or uuid.uuid4().hex[:8]}")]


def _url_path(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path)


def _is_copy_of(props: Any, src: BlobClient, source: str, etag: str, size: int) -> bool:
    """True if ``props`` (a destination) is a server-side copy of exactly this version of
    the source: made by a mover of this version (its metadata), from this blob (the copy
    source the service recorded), not failed or aborted, and of the right size."""
    meta = props.metadata or {}
    copy = props.copy
    return (meta.get(MOVED_FROM) == quote_meta(source)
            and meta.get(MOVED_FROM_ETAG) == version_tag(etag)
            and copy is not None and copy.source is not None
            and _url_path(copy.source) == _url_path(src.url)
            and copy.status in ("success", "pending")
            and (copy.status == "pending" or props.size == size))


def _acquire(src: BlobClient, etag: str, wait: float) -> Any:
    """A lease on exactly the ``etag`` version of the source, or None if it changed or
    vanished. Another mover's lease is waited out for up to ``wait`` seconds (a dead
    mover's lease expires after LEASE_SECONDS); still leased after that: TransientError."""
    deadline = time.monotonic() + wait
    while True:
        try:
            return src.acquire_lease(lease_duration=LEASE_SECONDS, etag=etag,
                                     match_condition=MatchConditions.IfNotModified)
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
                raise TransientError(f"{src.blob_name}: leased by another mover for over "
                                     f"{wait:.0f} s", code="storage_transient") from exc
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


def _await_copy(dst: BlobClient, copy_id: str | None, name: str, lease: _Lease,
                timeout: float) -> Any:
    """Wait for the copy into ``dst`` to finish; return its properties once verified."""
    deadline = time.monotonic() + timeout
    while True:
        props = dst.get_blob_properties()
        copy = props.copy
        if copy_id is not None and (copy is None or copy.id != copy_id):
            raise TransientError(f"the copy at {name} is not this mover's (replaced)",
                                 code="storage_transient")
        status = copy.status if copy is not None else None
        if status != "pending":
            if status != "success":
                raise TransientError(f"copy to {name} ended as {status}",
                                     code="storage_transient")
            return props
        if time.monotonic() > deadline:
            raise TransientError(f"copy to {name} did not finish in {timeout:.0f} s",
                                 code="storage_transient")
        lease.keep()
        time.sleep(0.5)


def _place_copy(container: ContainerClient, src: BlobClient, source: str, props: Any,
                names: list[str], metadata: dict[str, str], lease: _Lease,
                timeout: float) -> str:
    """Copy the leased source version to the first free name of ``names`` and verify it;
    or adopt a verified copy of this very version that an earlier mover (one that died
    before deleting the source) left at one of them. Never overwrites: each copy is
    conditional on its destination not existing (If-None-Match: *)."""
    etag, size = props.etag, props.size
    for name in names:
        dst = container.get_blob_client(name)
        try:
            existing = dst.get_blob_properties()
        except ResourceNotFoundError:
            existing = None
        if existing is not None:
            if _is_copy_of(existing, src, source, etag, size):
                done = _await_copy(dst, existing.copy.id, name, lease, timeout)
                if done.size == size:
                    return name
            continue
        try:
            copy = dst.start_copy_from_url(
                src.url, metadata=metadata, source_etag=etag,
                source_match_condition=MatchConditions.IfNotModified,
                match_condition=MatchConditions.IfMissing)  # If-None-Match: *
        except ResourceExistsError:
            continue  # taken since we looked: the next name
        except HttpResponseError as exc:
            if exc.status_code in (409, 412) and dst.exists():
                continue
            raise
        done = _await_copy(dst, str(copy.get("copy_id") or "") or None, name, lease, timeout)
        if done.size != size:
            raise TransientError(f"copy of {source} to {name} has the wrong size",
                                 code="storage_transient")
        return name
    raise TransientError(f"{source}: no free destination among {', '.join(names)}",
                         code="storage_transient")


def _drop_orphans(container: ContainerClient, src: BlobClient, source: str, props: Any,
                  elsewhere: list[str]) -> None:
    """Delete copies of this very source version that a mover which died before deleting
    the source left at another destination (e.g. failed/ before a retry that loaded it).
    Safe: the source is still here at that version, under our lease, so no move of it
    completed, and only a verified copy of exactly this version matches."""
    for target in elsewhere:
        for name in candidates(target, props.etag)[:2]:
            dst = container.get_blob_client(name)
            try:
                existing = dst.get_blob_properties()
            except ResourceNotFoundError:
                continue
            if existing.copy is not None and existing.copy.status == "success" and \
                    _is_copy_of(existing, src, source, props.etag, props.size):
                with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError):
                    dst.delete_blob(etag=existing.etag,
                                    match_condition=MatchConditions.IfNotModified)


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
    if _url_path(copy.source) != _url_path(blob.url):
        return
    try:
        stale = blob.get_blob_properties()
    except ResourceNotFoundError:
        return
    if version_tag(stale.etag) != meta.get(MOVED_FROM_ETAG):
        return
    with contextlib.suppress(ResourceNotFoundError, ResourceModifiedError, HttpResponseError):
        if stale.lease.state == "leased":
            BlobLeaseClient(blob).break_lease(lease_break_period=0)
        blob.delete_blob(etag=stale.etag, match_condition=MatchConditions.IfNotModified)


def move(container: ContainerClient, source: str, target: str, *, etag: str,
         metadata: dict[str, str] | None = None, unique_suffix: str | None = None,
         timeout: float = 300.0, wait: float = 0.0,
         orphans: list[str] | None = None, drop_origin: bool = False) -> str | None:
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
    died before deleting it (see ``_drop_stale_origin``).

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
        meta[MOVED_FROM], meta[MOVED_FROM_ETAG] = quote_meta(source), version_tag(props.etag)
        moved = _place_copy(container, src, source, props,
                            candidates(target, props.etag, unique_suffix), meta, lease,
                            timeout)
        _drop_orphans(container, src, source, props, orphans or [])
        if drop_origin:
            _drop_stale_origin(container, source, props)
        lease.keep()
        try:
            src.delete_blob(etag=props.etag, match_condition=MatchConditions.IfNotModified,
                            lease=raw_lease)
        except (ResourceNotFoundError, ResourceModifiedError):
            return None
        deleted = True
        return moved
    finally:
        if not deleted:
            with contextlib.suppress(HttpResponseError):
                raw_lease.release()


def now_utc() -> datetime:
    return datetime.now(UTC)


def upload(container: ContainerClient, path: Any, *, dataset: str | None = None,
           name: str | None = None) -> str:
    """Upload a local file to incoming/[<dataset>/]<name>; return the blob name."""
    from pathlib import Path

    from azure.storage.blob import ContentSettings

    path = Path(path)
    parts = [INCOMING, *safe_parts(dataset or ""), *safe_parts(name or path.name)]
    blob = "/".join(parts)
    if any(not p.strip() or p != p.strip() for p in parts):
        # `process` and `requeue` strip what is pasted: such a blob could not be named there
        shown = urllib.parse.quote(blob[:200], safe="/ ._-~")
        raise ConfigError(f"{shown!r}: a blob name with spaces at the start or end of a part "
                          "(or only spaces) is refused; give another with --name",
                          code="bad_blob_name")
    if len(blob) > MAX_NAME:
        raise ConfigError(f"blob name longer than {MAX_NAME} characters; give a shorter "
                          "one with --name", code="bad_blob_name")
    from .names import problem

    reason = problem(blob, INCOMING)  # what the trigger would refuse: refused here already
    if reason is not None:
        shown = urllib.parse.quote(blob[:200], safe="/ ._-~")
        raise ConfigError(f"{shown}: refused: {reason}; give another name with --name",
                          code="bad_blob_name")
    with path.open("rb") as data:
        container.get_blob_client(blob).upload_blob(
            data, overwrite=True, max_concurrency=2,
            content_settings=ContentSettings(
                content_type="application/gzip" if path.suffix == ".gz" else "text/csv"))
    return blob
