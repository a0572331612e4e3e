"""What the function app's triggers call. function_app.py binds; this module acts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import pipeline, retry, telemetry
from .datasets import load_datasets
from .ledger import RunRecord
from .settings import STORAGE_CONNECTION, Settings, load_settings, read_bindings

log = logging.getLogger("sales_etl")


@dataclass(frozen=True)
class Bindings:
    blob_path: str
    connection: str
    source: str
    schedule: str


def bindings() -> Bindings:
    """Trigger parameters, from app settings with defaults, read when the host indexes."""
    container, source, schedule = read_bindings()
    return Bindings(blob_path=f"{container}/incoming/{{name}}", connection=STORAGE_CONNECTION,
                    source=source, schedule=schedule)


@lru_cache(maxsize=1)
def settings() -> Settings:
    """Validated once per worker process; a bad setting or dataset file fails every
    invocation loudly (the blob stays in incoming/, the host retries, then poisons)."""
    loaded = load_settings()
    load_datasets(loaded.datasets_dir)  # a malformed dataset file stops the app here
    telemetry.configure(loaded)  # Application Insights, when its connection string is set
    return loaded


def on_blob(client: Any) -> RunRecord:
    return pipeline.process_blob(client, settings(), trigger="blob")


def on_timer(timer: Any) -> retry.SweepReport:
    if getattr(timer, "past_due", False):
        log.info("retry sweep is running late")
    return retry.sweep(settings())
