"""``blobs.IncomingBlob``: what the pipeline does to the blob being processed, on client
doubles (no storage needed): which version, which names, which conditions, which metadata."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError

from sales_etl.storage import blobs, moves
from sales_etl.storage.blobs import IncomingBlob

UUID = "0b4f8a6e-8f5c-4d27-9a51-3f0e6c1d2b7a"
LANDED = datetime(2026, 3, 4, 23, 59, tzinfo=UTC)


class FakeBlob:
    def __init__(self, name: str, etag: str | None) -> None:
        self.blob_name, self.etag = name, etag
        self.uploads: list[dict[str, Any]] = []

    def get_blob_properties(self) -> Any:
        if self.etag is None:
            raise ResourceNotFoundError("gone")
        return SimpleNamespace(etag=self.etag, size=10, last_modified=LANDED, metadata={"attempts": "2"})

    def upload_blob(self, data: Any, **kwargs: Any) -> None:
        self.uploads.append({"data": data.read(), **kwargs})


class FakeContainer:
    def __init__(self, etag: str | None = '"0x1"') -> None:
        self.blobs: dict[str, FakeBlob] = {}
        self.etag = etag

    def get_blob_client(self, name: str) -> FakeBlob:
        return self.blobs.setdefault(name, FakeBlob(name, self.etag))


def pinned(cc: FakeContainer, name: str = "incoming/sales/2026/day.csv") -> IncomingBlob:
    client = cc.get_blob_client(name)
    props = client.get_blob_properties()
    return IncomingBlob(
        cc,  # type: ignore[arg-type]
        client,  # type: ignore[arg-type]
        name,
        props.etag,
        props.size,
        props.last_modified,
        dict(props.metadata),
    )


def test_find_pins_the_current_version_or_says_it_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    cc = FakeContainer()
    service = SimpleNamespace(get_container_client=lambda name: cc)
    monkeypatch.setattr(blobs, "service_client", lambda storage: service)
    settings = SimpleNamespace(require_storage=lambda: None)
    found = IncomingBlob.find(settings, "sales", "incoming/a.csv")  # type: ignore[arg-type]
    assert found is not None
    assert (found.etag, found.size, found.last_modified) == ('"0x1"', 10, LANDED)
    assert found.metadata == {"attempts": "2"} and found.route.dataset == "sales"
    gone = FakeContainer(etag=None)
    monkeypatch.setattr(
        blobs, "service_client", lambda storage: SimpleNamespace(get_container_client=lambda name: gone)
    )
    assert IncomingBlob.find(settings, "sales", "incoming/a.csv") is None  # type: ignore[arg-type]


def test_current_tells_in_place_from_superseded_from_gone() -> None:
    cc = FakeContainer()
    blob = pinned(cc)
    assert blob.current() is None
    cc.blobs[blob.name].etag = '"0x2"'
    assert blob.current() == "superseded"
    cc.blobs[blob.name].etag = None
    assert blob.current() == "gone"


def test_rejects_are_the_runs_own_file_never_overwritten() -> None:
    cc = FakeContainer()
    blob = pinned(cc)
    target = blob.write_rejects(io.BytesIO(b"line,reason_code\n"), UUID)
    assert target == f"rejected/sales/2026/day.csv.{UUID}.rejects.csv"
    [upload] = cc.blobs[target].uploads
    assert upload["overwrite"] is False and upload["data"] == b"line,reason_code\n"
    assert upload["metadata"] == {"source_path": blob.name, "run_uuid": UUID}
    assert upload["content_settings"].content_type == "text/csv"


def test_moves_are_of_the_pinned_version_and_name_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str, dict[str, Any]]] = []

    def move(container: Any, source: str, target: str, **kwargs: Any) -> str:
        calls.append((source, target, kwargs))
        return target

    monkeypatch.setattr(moves, "move", move)
    blob = pinned(FakeContainer())
    assert (
        blob.to_processed(UUID, {"status": "loaded", "attempts": "3"})
        == "processed/sales/2026/03/04/2026/day.csv"
    )  # the day the version landed
    assert blob.to_failed(UUID, {"reason_code": "bad_csv"}) == "failed/sales/2026/day.csv"
    (_, _, done), (_, _, failed) = calls
    assert done["metadata"] == {"status": "loaded", "attempts": "3", "run_uuid": UUID}
    assert done["orphans"] == ["failed/sales/2026/day.csv"] and done["drop_origin"]
    assert failed["metadata"] == {"reason_code": "bad_csv", "run_uuid": UUID}
    for _, _, kwargs in calls:
        assert kwargs["etag"] == '"0x1"' and kwargs["unique_suffix"] == UUID[:8]
        assert kwargs["wait"] == blobs.MOVE_WAIT_SECONDS
        assert kwargs["drop_metadata"] == ("run_id",)  # an earlier version's key
