"""What the function app's triggers call. function_app.py binds; this module acts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sales_etl.config.settings import Settings, load_settings, read_bindings
from sales_etl.datasets.reader import scan_datasets
from sales_etl.db.ledger import RunRecord
from sales_etl.flow import pipeline, retry, telemetry

log = logging.getLogger("sales_etl")


@dataclass(frozen=True)
class Bindings:
    blob_path: str | None  # None: the blob trigger's settings are refused (logged at start)
    connection: str
    source: str | None
    schedule: str | None  # None: the sweep's schedule is refused (logged at start)


def bindings() -> Bindings:
    """Trigger parameters, read when the worker indexes function_app.py. Nothing read here
    may stop indexing (that would remove both functions): a value the host would refuse is
    logged as an error naming the setting, and only the function that needs it is left out.
    Broken dataset files are reported here too (they fail only their own files)."""
    telemetry.configure_logging()
    b = read_bindings()
    for problem in b.problems:
        log.error("setting refused, %s: %s", _function_of(problem), problem)
    _report_datasets()
    return Bindings(
        blob_path=f"{b.container}/incoming/{{name}}" if b.container else None,
        connection=b.connection,
        source=b.source,
        schedule=b.schedule,
    )


def _function_of(problem: str) -> str:
    return (
        "retry_sweep is not registered"
        if problem.startswith("SWEEP_SCHEDULE")
        else "load_blob is not registered"
    )


def _report_datasets() -> None:
    try:
        loaded = load_settings()
    except Exception:  # reported by the first invocation, with every setting named
        return
    try:
        _, broken = scan_datasets(loaded.datasets_dir)
    except Exception:
        log.exception("could not read the dataset definitions")
        return
    for name, message in sorted(broken.items()):
        log.error(
            "dataset %s is broken; its files will fail until it is fixed (other datasets load): %s",
            name,
            message,
        )


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Validated once per worker process; a bad setting fails every invocation loudly (the
    blob stays in incoming/, the host retries, then poisons). A broken dataset file fails
    only the files of that dataset (pipeline: reason code unknown_dataset)."""
    loaded = load_settings()
    telemetry.configure(loaded, in_worker=True)  # each record exported once (telemetry.py)
    return loaded


def on_blob(client: Any) -> RunRecord:
    return pipeline.process_blob(client, settings(), trigger="blob")


def on_timer(timer: Any) -> retry.SweepReport:
    if getattr(timer, "past_due", False):
        log.info("retry sweep is running late")
    return retry.sweep(settings())
