"""Fast checks a command makes before it talks to a service, so that an operator who
points it at nothing hears so in a second, in one line, instead of after the storage
client's retries (about 20 s) and a traceback."""

from __future__ import annotations

import http.client
import ssl
import urllib.parse

from sales_etl.config.settings import StorageSettings
from sales_etl.core.errors import TransientError

CONNECT_SECONDS = 3.0
ANSWER_SECONDS = 10.0


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
    endpoint's host and port, or when what answers there does not speak HTTP in
    ANSWER_SECONDS (a wrong port, a firewall that holds connections open: the storage
    client would wait 60 s per attempt, over four minutes in all)."""
    url = blob_endpoint(storage)
    parsed = urllib.parse.urlsplit(url)
    host = parsed.hostname or ""
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    where = f"{parsed.scheme}://{host}:{port}"
    conn: http.client.HTTPConnection
    if parsed.scheme == "https":
        # a liveness probe only (no credentials sent): the storage client checks the
        # certificate itself, with the CA bundle it is configured with
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=CONNECT_SECONDS, context=context)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=CONNECT_SECONDS)
    try:
        try:
            conn.connect()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise TransientError(
                f"storage unreachable at {where} ({reason})", code="storage_unreachable"
            ) from None
        try:
            assert conn.sock is not None
            conn.sock.settimeout(ANSWER_SECONDS)
            conn.request("HEAD", parsed.path or "/")
            conn.getresponse()
        except (OSError, http.client.HTTPException) as exc:
            reason = (
                f"no answer in {ANSWER_SECONDS:.0f} s"
                if isinstance(exc, TimeoutError)
                else f"no HTTP answer: {type(exc).__name__}"
            )
            raise TransientError(
                f"storage unreachable at {where}: something listens there but "
                f"it is not a storage service that answers ({reason}); check "
                "the endpoint and port",
                code="storage_unreachable",
            ) from None
    finally:
        conn.close()
