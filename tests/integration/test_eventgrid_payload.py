"""The local Event Grid emulation in docs/operations.md: the event posted to the blob
extension is an array whose data carries the blob's real url, blobType and eTag (built from a
real blob on Azurite), its subject passes the guide's subscription filter, and the webhook
names the app's blob-triggered function."""

from __future__ import annotations

import ast
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType

from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings, project_root

GUIDE = project_root() / "docs" / "operations.md"


def _script() -> ModuleType:
    path = project_root() / "docs" / "eventgrid_event.py"
    spec = importlib.util.spec_from_file_location("eventgrid_event", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_event_carries_the_blob_as_it_is(settings: Settings, cc: ContainerClient, clean: None) -> None:
    cc.upload_blob("incoming/eg test/ünïcode.csv", b"transaction_id\nTX-1\n", overwrite=True)
    blob = cc.get_blob_client("incoming/eg test/ünïcode.csv")
    etag = blob.get_blob_properties().etag
    events = _script().blob_created_events(blob, settings.container)
    assert isinstance(events, list) and len(events) == 1
    data = events[0]["data"]
    assert data["url"] == blob.url and data["blobType"] == "BlockBlob"
    assert data["eTag"] == etag.strip('"') and data["contentLength"] == 20
    assert events[0]["eventType"] == "Microsoft.Storage.BlobCreated"
    guide = GUIDE.read_text()
    prefix = re.search(r"--subject-begins-with (\S+)", guide)
    assert prefix is not None
    assert events[0]["subject"].startswith(prefix.group(1).replace("$CONTAINER", settings.container))
    json.dumps(events)  # what the script prints
    # Overwritten: a new ETag, and the event says so (the extension compares it).
    cc.upload_blob("incoming/eg test/ünïcode.csv", b"transaction_id\nTX-2\n", overwrite=True)
    assert _script().blob_created_events(blob, settings.container)[0]["data"]["eTag"] != data["eTag"]


def test_the_guide_posts_an_array_to_the_blob_extension_of_the_real_function() -> None:
    guide = GUIDE.read_text()
    section = guide[guide.index("### Local Event Grid emulation") :]
    body = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))  # type: ignore[union-attr]
    assert isinstance(body, list)
    for event in body:
        assert {"url", "blobType", "eTag"} <= set(event["data"])
        assert event["eventType"] == "Microsoft.Storage.BlobCreated"
    assert "aeg-event-type: Notification" in section
    names = set(re.findall(r"/runtime/webhooks/blobs\?functionName=Host\.Functions\.(\w+)", guide))
    tree = ast.parse(Path(project_root() / "function_app.py").read_text())
    blob_functions = {
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
        and any("blob_trigger" in ast.unparse(d) for d in node.decorator_list)
    }
    assert names and names <= blob_functions
