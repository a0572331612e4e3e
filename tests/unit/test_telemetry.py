"""Telemetry: one span per file and one per stage, counters by outcome; with nothing
configured, the no-op API exports nothing and never fails."""

from __future__ import annotations

import logging
import time

import pytest
from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from sales_etl.config.settings import load_settings
from sales_etl.db.ledger import RunRecord
from sales_etl.flow import telemetry


def run_record() -> RunRecord:
    return RunRecord(
        dataset="sales",
        blob_path="incoming/a.csv",
        trigger="blob",
        status="loaded",
        rows_read=10,
        rows_loaded=7,
        rows_duplicate=2,
        rows_rejected=1,
        seconds=1.5,
    )


def test_nothing_configured_is_a_no_op() -> None:
    assert telemetry.configure(load_settings({})) is False
    timings = telemetry.Timings()
    with timings.stage("read"):
        pass
    telemetry.record(run_record(), timings, time.time_ns())  # exports nothing, raises nothing


@pytest.fixture(scope="module")
def exported() -> tuple[InMemorySpanExporter, InMemoryMetricReader]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    return spans, reader


def test_spans_per_stage_and_counters(exported: tuple[InMemorySpanExporter, InMemoryMetricReader]) -> None:
    spans, reader = exported
    timings = telemetry.Timings()
    for stage in telemetry.STAGES:
        with timings.stage(stage):
            time.sleep(0.001)
    rec = run_record()
    telemetry.record(rec, timings, time.time_ns())
    finished = {s.name: s for s in spans.get_finished_spans()}
    assert set(finished) == {"sales_etl.file", *(f"sales_etl.{s}" for s in telemetry.STAGES)}
    file_span = finished["sales_etl.file"]
    attributes, context = file_span.attributes, file_span.context
    assert attributes is not None and context is not None
    assert attributes["sales_etl.run_uuid"] == rec.run_uuid
    assert attributes["sales_etl.rows_loaded"] == 7
    for stage in telemetry.STAGES:
        child = finished[f"sales_etl.{stage}"]
        assert child.parent is not None and child.parent.span_id == context.span_id
        assert child.start_time is not None and child.end_time is not None
        assert child.end_time - child.start_time >= 1_000_000  # at least the 1 ms slept
    data = reader.get_metrics_data()
    assert data is not None
    points = {
        (m.name, tuple(sorted(dict(p.attributes or {}).items()))): p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        for p in m.data.data_points
        if isinstance(p, NumberDataPoint)
    }  # the counters' points
    assert points[("sales_etl.rows", (("dataset", "sales"), ("outcome", "loaded")))].value == 7
    assert points[("sales_etl.rows", (("dataset", "sales"), ("outcome", "rejected")))].value == 1


AI = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://127.0.0.1:9/"


@pytest.fixture
def distro(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, object]]:
    """The Azure Monitor distro's entry point, recorded (Application Insights cannot be
    reached from here): which exporters the app would switch on."""
    import azure.monitor.opentelemetry as distro_module

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(distro_module, "configure_azure_monitor", lambda **kwargs: calls.append(kwargs))
    monkeypatch.setattr(telemetry, "_configured", False)
    return calls


def test_under_the_worker_with_its_exporter_on_the_app_exports_nothing_more(
    distro: list[dict[str, object]],
) -> None:
    s = load_settings(
        {"APPLICATIONINSIGHTS_CONNECTION_STRING": AI, "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "true"}
    )
    assert s.worker_telemetry
    assert telemetry.configure(s, in_worker=True) is False
    assert distro == []  # the worker configured the distro: a second one would double


def test_under_the_worker_without_it_logs_are_left_to_the_host(distro: list[dict[str, object]]) -> None:
    s = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": AI})
    assert telemetry.configure(s, in_worker=True) is True
    [call] = distro
    assert call["disable_logging"] is True and call["connection_string"] == AI


def test_the_cli_exports_logs_traces_and_metrics(distro: list[dict[str, object]]) -> None:
    s = load_settings({"APPLICATIONINSIGHTS_CONNECTION_STRING": AI})
    assert telemetry.configure(s) is True
    [call] = distro
    assert call.get("logger_name") == "sales_etl" and "disable_logging" not in call


def test_sdk_http_logging_is_kept_off_the_host_log() -> None:
    http = logging.getLogger("azure.core.pipeline.policies.http_logging_policy")
    saved = http.level
    try:
        http.setLevel(logging.NOTSET)
        telemetry.configure_logging()
        assert http.level == logging.WARNING
    finally:
        http.setLevel(saved)
