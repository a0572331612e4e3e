"""Traces and metrics through OpenTelemetry; exported to Application Insights by the Azure
Monitor distro when ``APPLICATIONINSIGHTS_CONNECTION_STRING`` is set, otherwise the API's
no-op implementation: nothing is exported and nothing fails.

Stages interleave (a file streams through them chunk by chunk), so each file gets one
span, with one child span per stage whose length is the time spent in that stage in all,
laid end to end from the file's start.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import metrics, trace

from sales_etl.config.settings import Settings
from sales_etl.db.ledger import RunRecord

STAGES = ("read", "transform", "protect", "copy", "merge")
_tracer = trace.get_tracer("sales_etl")
_meter = metrics.get_meter("sales_etl")
_rows = _meter.create_counter(
    "sales_etl.rows", unit="{row}", description="rows by outcome: loaded, duplicate, rejected"
)
_files = _meter.create_counter("sales_etl.files", unit="{file}", description="file attempts")
_seconds = _meter.create_histogram(
    "sales_etl.file.duration", unit="s", description="seconds per file attempt"
)
_configured = False


# Loggers whose INFO records an operator does not need in the host's log: the Azure SDK
# writes two per HTTP request (request and response headers). The worker sets the root
# logger to INFO and forwards every record to the host, and host.json's "Azure.Core"
# filter does not apply to records that come from the Python side.
QUIET_LOGGERS = (
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
    "azure.monitor.opentelemetry.exporter",
)


def configure_logging() -> None:
    """Keep the host's log to what an operator needs (called when the worker indexes)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def configure(settings: Settings, *, in_worker: bool = False) -> bool:
    """Send telemetry to Application Insights if it is configured, each record once.

    Under the Functions worker (current Azure Functions guidance for Python): host.json
    ``"telemetryMode": "OpenTelemetry"`` plus the app setting
    ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true`` make the worker itself configure
    the Azure Monitor distro (logs, traces, metrics, with the invocation's trace context);
    configuring it again here would export everything twice, so this does nothing. Without
    that setting the host forwards the worker's log records to Application Insights itself,
    so only traces and metrics are configured here (logging disabled). Outside the worker
    (the CLI) this configures all three."""
    global _configured
    if _configured or settings.appinsights_connection is None:
        return _configured
    if in_worker and settings.worker_telemetry:
        return False  # the worker exports; the spans and counters use its providers
    from azure.monitor.opentelemetry import configure_azure_monitor

    if in_worker:
        configure_azure_monitor(connection_string=settings.appinsights_connection.get(), disable_logging=True)
    else:
        configure_azure_monitor(
            connection_string=settings.appinsights_connection.get(), logger_name="sales_etl"
        )
        logging.getLogger("sales_etl").setLevel(logging.INFO)
    _configured = True
    return True


class Timings:
    """Seconds per stage, accumulated over a file's chunks."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started

    def rounded(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in self.seconds.items()}


def record(rec: RunRecord, timings: Timings, started_ns: int) -> None:
    """One span for the file and one per stage; counters and a duration histogram."""
    attributes: dict[str, str | int] = {
        "sales_etl.run_uuid": rec.run_uuid,
        "sales_etl.dataset": rec.dataset,
        "sales_etl.blob": rec.blob_path,
        "sales_etl.status": rec.status,
        "sales_etl.rows_read": rec.rows_read,
        "sales_etl.rows_loaded": rec.rows_loaded,
        "sales_etl.rows_duplicate": rec.rows_duplicate,
        "sales_etl.rows_rejected": rec.rows_rejected,
    }
    file_span = _tracer.start_span("sales_etl.file", start_time=started_ns, attributes=attributes)
    context = trace.set_span_in_context(file_span)
    at = started_ns
    for name, seconds in timings.seconds.items():
        end = at + int(seconds * 1e9)
        _tracer.start_span(
            f"sales_etl.{name}",
            context=context,
            start_time=at,
            attributes={"sales_etl.run_uuid": rec.run_uuid},
        ).end(end_time=end)
        at = end
    if rec.status == "failed":
        file_span.set_status(trace.Status(trace.StatusCode.ERROR, rec.reason_code or ""))
    file_span.end()
    labels = {"dataset": rec.dataset}
    _files.add(1, {**labels, "status": rec.status})
    for outcome, count in (
        ("loaded", rec.rows_loaded),
        ("duplicate", rec.rows_duplicate),
        ("rejected", rec.rows_rejected),
    ):
        if count:
            _rows.add(count, {**labels, "outcome": outcome})
    if rec.seconds is not None:
        _seconds.record(rec.seconds, {**labels, "status": rec.status})
