"""The blob adapter: clients, range streaming, ETag-safe moves, metadata, paths.

Container layout::

    incoming/[<dataset>/]<file>      files to load (no dataset folder means "sales")
    processed/<dataset>/YYYY/MM/DD/<file>
    failed/<dataset>/<file>          with the reason and retry state in metadata
    deadletter/<dataset>/<file>      gave up after RETRY_MAX_ATTEMPTS
    rejected/<dataset>/<file>.rejects.csv
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import time
import urllib.parse
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
from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient, ExponentialRetry

from .datasets import DEFAULT_DATASET
from .errors import TransientError
from .settings import Settings, StorageSettings

INCOMING, PROCESSED, FAILED, DEADLETTER, REJECTED = (
    "incoming", "processed", "failed", "deadletter", "rejected")
FOLDERS = (INCOMING, PROCESSED, FAILED, DEADLETTER, REJECTED)
RANGE_BYTES = 2 << 20
MAX_NAME = 1024  # Azure's limit on a blob name
LEASE_SECONDS = 60  # a mover's hold on the source blob


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

    def rejects(self) -> str:
        return f"{REJECTED}/{self.dataset}/{self.rel}.rejects.csv"


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
            match_condition=MatchConditions.IfNotModified, max_concurrency=1)
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


def unique_name(container: ContainerClient, name: str, suffix: str) -> str:
    """``name`` if free, else ``name`` with ``~suffix`` before its extension."""
    if not container.get_blob_client(name).exists():
        return name
    head, dot, ext = name.rpartition(".")
    if not dot or "/" in ext:
        return f"{name}~{suffix}"
    return f"{head}~{suffix}.{ext}"


def move(container: ContainerClient, source: str, target: str, *, etag: str,
         metadata: dict[str, str] | None = None, unique_suffix: str | None = None,
         timeout: float = 300.0) -> str | None:
    """Move exactly the ``etag`` version of ``source`` to ``target`` (or, if taken and a
    ``unique_suffix`` is given, to a free name beside it). Returns the name moved to, or
    None when the move is not this caller's to make: the source changed or vanished (a
    new upload under the same name stays in place, to be processed in its turn) or
    another mover holds its lease.

    A lease on the source serialises movers; the server-side copy is awaited and checked
    before the source is deleted, with the lease and only if it is still that version.
    """
    src = container.get_blob_client(source)
    try:
        lease = src.acquire_lease(lease_duration=LEASE_SECONDS, etag=etag,
                                  match_condition=MatchConditions.IfNotModified)
    except (ResourceNotFoundError, ResourceModifiedError):
        return None
    except HttpResponseError as exc:
        if exc.status_code in (409, 412):
            return None
        raise
    deleted = False
    try:
        props = src.get_blob_properties(lease=lease)
        if props.etag.strip('"') != etag.strip('"'):
            return None
        etag = props.etag
        if unique_suffix is not None:
            target = unique_name(container, target, unique_suffix)
        dst = container.get_blob_client(target)
        meta = dict(props.metadata or {})
        meta.update(metadata or {})
        copy = dst.start_copy_from_url(
            src.url, metadata=meta, source_etag=etag,
            source_match_condition=MatchConditions.IfNotModified)
        deadline = time.monotonic() + timeout
        status = copy.get("copy_status")
        while status == "pending":
            if time.monotonic() > deadline:
                raise TransientError(f"copy of {source} to {target} did not finish in "
                                     f"{timeout:.0f} s")
            time.sleep(0.5)
            status = dst.get_blob_properties().copy.status
        if status != "success":
            raise TransientError(f"copy of {source} to {target} ended as {status}")
        if dst.get_blob_properties().size != props.size:
            raise TransientError(f"copy of {source} to {target} has the wrong size")
        try:
            src.delete_blob(etag=etag, match_condition=MatchConditions.IfNotModified, lease=lease)
        except (ResourceNotFoundError, ResourceModifiedError):
            return None
        deleted = True
        return target
    finally:
        if not deleted:
            with contextlib.suppress(HttpResponseError):
                lease.release()


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
    if len(blob) > MAX_NAME:
        raise ValueError(f"blob name longer than {MAX_NAME} characters")
    with path.open("rb") as data:
        container.get_blob_client(blob).upload_blob(
            data, overwrite=True, max_concurrency=2,
            content_settings=ContentSettings(
                content_type="application/gzip" if path.suffix == ".gz" else "text/csv"))
    return blob
