"""Fast checks a command makes before it talks to a service, so that an operator who
points it at nothing hears so in a second, in one line, instead of after the storage
client's retries (about 20 s) and a traceback."""

from __future__ import annotations

import socket
import urllib.parse

from .errors import TransientError
from .settings import StorageSettings

CONNECT_SECONDS = 3.0


def blob_endpoint(storage: StorageSettings) -> str:
    """The blob service URL the clients will use (no key, safe to print)."""
    if storage.service_uri is not None:
        return storage.service_uri
    assert storage.connection_string is not None
    parts = dict(p.split("=", 1) for p in storage.connection_string.get().split(";") if "=" in p)
    if parts.get("UseDevelopmentStorage", "").lower() == "true":
        return "http://127.0.0.1:10000/devstoreaccount1"
    if parts.get("BlobEndpoint"):
        return parts["BlobEndpoint"].rstrip("/")
    protocol = parts.get("DefaultEndpointsProtocol", "https")
    suffix = parts.get("EndpointSuffix", "core.windows.net")
    return f"{protocol}://{parts.get('AccountName', '')}.blob.{suffix}"


def check_storage(storage: StorageSettings) -> None:
    """Raise TransientError (code ``storage_unreachable``) when nothing answers at the blob
    endpoint's host and port."""
    url = blob_endpoint(storage)
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=CONNECT_SECONDS):
            return
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise TransientError(f"storage unreachable at {parsed.scheme}://{host}:{port} "
                             f"({reason})", code="storage_unreachable") from None
