"""The blob being processed, and reading it: the client side of one blob under incoming/.

``IncomingBlob.find`` pins one version of a blob (its ETag, size, metadata, the time it
landed) with the package's own client; from then on every call is about that version:

* ``current()``: is it still the one in place? (None, "gone" or "superseded");
* ``open()``: its bytes, read in ``RANGE_BYTES`` ranges, each If-Match the ETag (a new
  upload mid-read fails the read instead of mixing versions), the next range prefetched;
* ``write_rejects(data, run_uuid)``: the run's rejects file
  ``rejected/<dataset>/<file>.<run uuid>.rejects.csv``, created only if absent, never
  overwritten;
* ``to_processed`` / ``to_failed``: the conditional move of that version (``moves.move``:
  nothing overwritten, nothing lost), waiting out another mover's lease for up to
  ``MOVE_WAIT_SECONDS``.

Every file it writes or moves names the run in metadata as ``run_uuid`` (and drops the
``run_id`` key that earlier versions wrote, so that no stale run is named beside it).
What else to write into metadata (retry state, reasons) is the caller's; what a move
guarantees is ``moves``'; folder names are ``container``'s, metadata quoting
``stages.names``'.
"""

from __future__ import annotations

import contextvars
import io
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, BinaryIO, Protocol

from azure.core import MatchConditions
from azure.storage.blob import BlobClient, ContainerClient, ContentSettings

from sales_etl.config.settings import Settings
from sales_etl.core.reasons import Moved
from sales_etl.stages.names import quote_meta_path
from sales_etl.storage import moves
from sales_etl.storage.container import (
    LEGACY_RUN_UUID,
    RUN_UUID,
    Route,
    now_utc,
    properties,
    route,
    service_client,
)

RANGE_BYTES = 2 << 20
# How long a mover waits out another mover's lease on the blob (a crashed one's lapses
# after moves.LEASE_SECONDS) before failing the invocation so that the host retries.
MOVE_WAIT_SECONDS = 120.0


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
            offset=offset,
            length=length,
            etag=self._etag,
            match_condition=MatchConditions.IfNotModified,
            max_concurrency=1,
            # The stored bytes, always: with ``Content-Encoding: gzip`` the HTTP stack would
            # otherwise gunzip each range on its own; ``decode.open_bytes`` decides by content.
            decompress=False,
        )
        return downloader.readall()

    def _prefetch(self) -> None:
        if self._next_offset >= self._size:
            self._pending = None
            return
        length = min(self._range, self._size - self._next_offset)
        # In the caller's context: the worker finds the invocation id of a log record there
        self._pending = self._pool.submit(
            contextvars.copy_context().run, self._fetch, self._next_offset, length
        )
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


@dataclass
class IncomingBlob:
    """One version of a blob under incoming/, pinned by ``find``."""

    container: ContainerClient
    client: BlobClient
    name: str
    etag: str
    size: int
    last_modified: datetime | None
    metadata: dict[str, str] = field(default_factory=dict)  # untrusted: anyone can set it

    @classmethod
    def find(cls, settings: Settings, container: str, name: str) -> IncomingBlob | None:
        """The blob's current version, through the package's own client for it (same
        setting, same identity as the trigger's: one retry policy for every storage call
        of the invocation); None when it is gone (moved by another invocation)."""
        cc = service_client(settings.require_storage()).get_container_client(container)
        client = cc.get_blob_client(name)
        props = properties(client)
        if props is None:
            return None
        return cls(cc, client, name, props.etag, props.size, props.last_modified, dict(props.metadata or {}))

    @property
    def route(self) -> Route:
        return route(self.name)

    def current(self) -> Moved | None:
        """None if this version is still the one in place, else why not: "gone" (moved by
        another invocation) or "superseded" (a newer version landed under its name)."""
        now = properties(self.client)
        if now is None:
            return "gone"
        return None if now.etag == self.etag else "superseded"

    def open(self) -> BinaryIO:
        """This version's bytes (a changed blob fails the read: If-Match its ETag)."""
        return open_blob(self.client, self.etag, self.size)

    def write_rejects(self, data: IO[bytes], run_uuid: str) -> str:
        """Upload the run's rejects file; return its name. Never overwrites
        (If-None-Match: *): each run has its own file, named after its UUID."""
        target = self.route.rejects(run_uuid)
        self.container.get_blob_client(target).upload_blob(
            data,
            overwrite=False,
            content_settings=ContentSettings(content_type="text/csv"),
            metadata={"source_path": quote_meta_path(self.name), RUN_UUID: run_uuid},
        )
        return target

    def to_processed(self, run_uuid: str, metadata: dict[str, str]) -> str | None:
        """Move this version to processed/<dataset>/YYYY/MM/DD/, the day it landed, not
        today: every mover of this version (a re-run after a crash between copy and delete
        too) aims at the same names and finds its copy. A copy of it that a dead mover
        left in failed/, and the failed/ blob a dead sweep copied it from, are deleted.
        Returns where it landed, or None: another invocation moves it, or a new version
        was uploaded meanwhile and stays in incoming/."""
        landed = self.last_modified or now_utc()
        return moves.move(
            self.container,
            self.name,
            self.route.processed(landed),
            etag=self.etag,
            wait=MOVE_WAIT_SECONDS,
            unique_suffix=run_uuid[:8],
            orphans=[self.route.failed()],
            drop_origin=True,
            metadata={**metadata, RUN_UUID: run_uuid},
            drop_metadata=(LEGACY_RUN_UUID,),
        )

    def to_failed(self, run_uuid: str, metadata: dict[str, str]) -> str | None:
        """Move this version to failed/<dataset>/ with ``metadata`` (its retry state).
        Returns where it landed, or None when it changed or vanished meanwhile."""
        return moves.move(
            self.container,
            self.name,
            self.route.failed(),
            etag=self.etag,
            wait=MOVE_WAIT_SECONDS,
            unique_suffix=run_uuid[:8],
            drop_origin=True,
            metadata={**metadata, RUN_UUID: run_uuid},
            drop_metadata=(LEGACY_RUN_UUID,),
        )


class BlobRef(Protocol):
    """What names a blob: the trigger's ``BlobClient`` (or any object with these two)."""

    @property
    def container_name(self) -> str: ...

    @property
    def blob_name(self) -> str: ...
