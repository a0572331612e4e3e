"""The function app as the host indexes it: registered functions and binding JSON."""

import azurefunctions.extensions.bindings.blob as blob

from sales_etl import hostcall


def bindings(name: str) -> list[dict]:
    return hostcall.registered()[name].bindings


def test_registered_functions() -> None:
    assert set(hostcall.registered()) == {"load_blob", "retry_sweep"}


def test_blob_trigger_binding() -> None:
    (b,) = bindings("load_blob")
    assert b["type"] == "blobTrigger" and b["direction"] == "IN"
    assert b["path"] == "sales/incoming/{name}"
    assert b["connection"] == "SalesStorage"
    assert b["source"] == "LogsAndContainerScan"
    # SDK-type binding: the host sends a reference, never the blob's bytes
    assert b["properties"] == {"SupportsDeferredBinding": True}
    assert hostcall.registered()["load_blob"].parameters == {"client": blob.BlobClient}


def test_timer_binding() -> None:
    (b,) = bindings("retry_sweep")
    assert b["type"] == "timerTrigger"
    assert len(b["schedule"].split()) == 6
    assert b["runOnStartup"] is False and b["useMonitor"] is True
    assert set(hostcall.registered()["retry_sweep"].parameters) == {b["name"]}


def test_datum_is_what_the_host_sends() -> None:
    import json

    datum = hostcall.blob_trigger_datum("SalesStorage", "sales", "incoming/x.csv")
    assert datum.type == "model_binding_data"
    assert json.loads(datum.value.content) == {
        "Connection": "SalesStorage", "ContainerName": "sales", "BlobName": "incoming/x.csv"}


def test_bindings_follow_the_app_settings(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from sales_etl import functions

    monkeypatch.setenv("SALES_TRIGGER_SOURCE", "eventgrid")
    monkeypatch.setenv("SALES_CONTAINER", "landing")
    monkeypatch.setenv("SWEEP_SCHEDULE", "0 0 * * * *")
    b = functions.bindings()
    assert (b.blob_path, b.source, b.schedule, b.connection) == (
        "landing/incoming/{name}", "EventGrid", "0 0 * * * *", "SalesStorage")


def test_a_malformed_dataset_file_stops_the_worker_at_start(monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from sales_etl import functions
    from sales_etl.errors import ConfigError

    (tmp_path / "broken.toml").write_text('name = "broken"\nbusiness_key = ["a"]\n')
    monkeypatch.setenv("DATASETS_DIR", str(tmp_path))
    functions.settings.cache_clear()
    try:
        with pytest.raises(ConfigError) as err:
            functions.settings()
        assert "broken.toml" in err.value.message and "columns" in err.value.message
    finally:
        functions.settings.cache_clear()
