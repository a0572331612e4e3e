"""Print the Event Grid notification that Azure would send for a blob, to post to the blob
extension's webhook under `func start` (docs/operations.md, Local Event Grid emulation).

    eval "$(.venv/bin/sales-etl dev env)"
    .venv/bin/python docs/eventgrid_event.py incoming/mine.csv > /tmp/event.json

The blob extension reads an array of events and, from each, data.url, data.blobType and
data.eTag: they come from the blob's current properties, read with the app's own settings.
"""

from __future__ import annotations

import json
import sys
import uuid
from datetime import UTC, datetime
from typing import Any

from sales_etl.config.settings import load_settings
from sales_etl.storage.container import container_client


def blob_created_events(blob: Any, container: str) -> list[dict[str, Any]]:
    """The BlobCreated event (Event Grid schema) for ``blob``, a BlobClient, as a 1-event array."""
    props = blob.get_blob_properties()
    return [
        {
            "id": str(uuid.uuid4()),
            "eventType": "Microsoft.Storage.BlobCreated",
            "subject": f"/blobServices/default/containers/{container}/blobs/{blob.blob_name}",
            "eventTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "dataVersion": "",
            "metadataVersion": "1",
            "topic": f"/subscriptions/local/resourceGroups/local/providers/Microsoft.Storage/"
            f"storageAccounts/{blob.account_name}",
            "data": {
                "api": "PutBlob",
                "clientRequestId": str(uuid.uuid4()),
                "requestId": str(uuid.uuid4()),
                "eTag": str(props.etag).strip('"'),
                "contentType": props.content_settings.content_type or "application/octet-stream",
                "contentLength": props.size,
                "blobType": str(getattr(props.blob_type, "value", props.blob_type)),  # BlockBlob
                "url": blob.url,
                "sequencer": f"{int(datetime.now(UTC).timestamp() * 1e6):032d}",
                "storageDiagnostics": {"batchId": str(uuid.uuid4())},
            },
        }
    ]


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python docs/eventgrid_event.py <blob name, e.g. incoming/mine.csv>", file=sys.stderr)
        return 2
    settings = load_settings()
    blob = container_client(settings).get_blob_client(argv[0])
    print(json.dumps(blob_created_events(blob, settings.container), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
