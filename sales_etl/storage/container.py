"""The container: its layout, blob names, metadata, clients, uploads.

Container layout::

    incoming/[<dataset>/]<file>      files to load (no dataset folder means "sales")
    processed/<dataset>/YYYY/MM/DD/<file>   (the day the version landed)
    failed/<dataset>/<file>          with the reason and retry state in metadata
    deadletter/<dataset>/<file>      gave up after RETRY_MAX_ATTEMPTS
    rejected/<dataset>/<file>.<run uuid>.rejects.csv

This module holds what every other storage module shares: the folder names, ``route``
(a blob name -> its dataset and its path below the dataset folder, never escaping it),
the paths of each folder (``Route``), metadata quoting (blob metadata is ASCII, and
untrusted when read back), the run-UUID metadata key, the package's own clients (from the
same setting the trigger uses) and ``upload``. The client side of one blob being
processed is ``blobs``; moving a blob version (ETag-safe, never overwriting) is ``moves``.
"""

from __future__ import annotations

import urllib.parse
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import BlobServiceClient, ContainerClient, ExponentialRetry

from sales_etl.config.settings import Settings, StorageSettings
from sales_etl.core.errors import ConfigError
from sales_etl.datasets.reader import DEFAULT_DATASET

INCOMING, PROCESSED, FAILED, DEADLETTER, REJECTED = (
    "incoming",
    "processed",
    "failed",
    "deadletter",
    "rejected",
)
FOLDERS = (INCOMING, PROCESSED, FAILED, DEADLETTER, REJECTED)
MAX_NAME = 1024  # Azure's limit on a blob name
# The metadata key naming the run (its UUID, ``etl_runs.run_uuid``) that wrote a rejects
# file or moved a blob. Blobs moved before it had this name carry ``run_id`` instead.
RUN_UUID, LEGACY_RUN_UUID = "run_uuid", "run_id"


def service_client(storage: StorageSettings) -> BlobServiceClient:
    """The package's own client, from the same setting the trigger uses."""
    # Short retries: the sweep retries with real backoff; an invocation should fail fast.
    retry = ExponentialRetry(initial_backoff=1, increment_base=2, retry_total=3)
    if storage.connection_string is not None:
        return BlobServiceClient.from_connection_string(storage.connection_string.get(), retry_policy=retry)
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    credential: Any
    if storage.credential and storage.credential.lower() == "managedidentity":
        credential = ManagedIdentityCredential(client_id=storage.client_id)
    else:
        credential = (
            DefaultAzureCredential(managed_identity_client_id=storage.client_id)
            if storage.client_id
            else DefaultAzureCredential()
        )
    assert storage.service_uri is not None
    return BlobServiceClient(account_url=storage.service_uri, credential=credential, retry_policy=retry)


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
        """One file per run (its run UUID in the name): a re-sent file, or the same name in
        another folder, never replaces an earlier run's rejects."""
        return f"{REJECTED}/{self.dataset}/{self.rel}.{safe_tag(run_uuid)}.rejects.csv"


def safe_tag(text: str) -> str:
    """``text`` reduced to letters, digits and '-' (for a run UUID inside a blob name)."""
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


def run_uuid_of(metadata: Mapping[str, str] | None) -> str:
    """The run UUID a blob's metadata names ("" when none): ``run_uuid``, or ``run_id`` as
    blobs moved by earlier versions of the app carry it. Metadata is untrusted (anyone who
    can upload can set it): only a UUID is a run's name, returned in its canonical form;
    anything else (a huge value, control characters, percent-encoding) names no run, so it
    never reaches a log line's ``run_uuid`` field."""
    meta = metadata or {}
    for key in (RUN_UUID, LEGACY_RUN_UUID):
        value = meta.get(key) or ""
        if len(value) == 36:  # the canonical 8-4-4-4-12 form, as the app writes it
            try:
                return str(uuid.UUID(value))
            except ValueError:
                pass
    return ""


def properties(blob: Any) -> Any | None:
    """The blob's properties, or None when there is no such blob (any other error raises)."""
    try:
        return blob.get_blob_properties()
    except ResourceNotFoundError:
        return None


def now_utc() -> datetime:
    return datetime.now(UTC)


def upload(
    container: ContainerClient, path: Any, *, dataset: str | None = None, name: str | None = None
) -> str:
    """Upload a local file to incoming/[<dataset>/]<name>; return the blob name."""
    from pathlib import Path

    from azure.storage.blob import ContentSettings

    path = Path(path)
    parts = [INCOMING, *safe_parts(dataset or ""), *safe_parts(name or path.name)]
    blob = "/".join(parts)
    if any(not p.strip() or p != p.strip() for p in parts):
        # `process` and `requeue` strip what is pasted: such a blob could not be named there
        shown = urllib.parse.quote(blob[:200], safe="/ ._-~")
        raise ConfigError(
            f"{shown!r}: a blob name with spaces at the start or end of a part "
            "(or only spaces) is refused; give another with --name",
            code="bad_blob_name",
        )
    if len(blob) > MAX_NAME:
        raise ConfigError(
            f"blob name longer than {MAX_NAME} characters; give a shorter one with --name",
            code="bad_blob_name",
        )
    from sales_etl.stages.names import problem

    reason = problem(blob, INCOMING)  # what the trigger would refuse: refused here already
    if reason is not None:
        shown = urllib.parse.quote(blob[:200], safe="/ ._-~")
        raise ConfigError(f"{shown}: refused: {reason}; give another name with --name", code="bad_blob_name")
    with path.open("rb") as data:
        container.get_blob_client(blob).upload_blob(
            data,
            overwrite=True,
            max_concurrency=2,
            content_settings=ContentSettings(
                content_type="application/gzip" if path.suffix == ".gz" else "text/csv"
            ),
        )
    return blob
