"""Secrets and privileges: the loader's least-privileged role, keys checked at start, and
no secret in any log line of a full run."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import psycopg2
import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings, load_settings
from sales_etl.core.errors import ConfigError
from sales_etl.flow import pipeline, retry
from sales_etl.storage import container as storage
from sales_etl_dev import devstack, hostcall
from sales_etl_dev.generate import generate

from .conftest import names


def test_the_pipeline_runs_as_the_least_privileged_role(settings: Settings) -> None:
    db = settings.require_database()
    assert db.user == devstack.LOADER_USER != settings.require_admin_database().user
    conn = psycopg2.connect(**db.connect_kwargs())
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            for statement in (
                "DELETE FROM sales",
                "TRUNCATE sales",
                "UPDATE sales SET quantity = 1",
                "DROP TABLE sales",
                "DELETE FROM etl_runs",
                "CREATE TABLE intruder (x int)",
                "SELECT * FROM schema_migrations",
            ):
                with pytest.raises(psycopg2.errors.InsufficientPrivilege):
                    cur.execute(statement)
    finally:
        conn.close()


def test_missing_keys_stop_processing_and_lose_nothing(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    g = generate(tmp_path / "nokeys.csv", 50, seed=61)
    blob = storage.upload(cc, g.path)
    keyless = replace(settings, fernet_keys=())
    with pytest.raises(ConfigError, match="FERNET_KEYS"):
        pipeline.process_blob(cc.get_blob_client(blob), keyless)
    assert names(cc) == [blob]  # the host retries; the blob is still there


def test_malformed_keys_are_refused_at_start(stack: devstack.StackState) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings({**stack.env(), "FERNET_KEYS": "not-a-key", "BLIND_INDEX_KEY": "short"})
    assert "FERNET_KEYS" in err.value.message and "BLIND_INDEX_KEY" in err.value.message
    assert "not-a-key" not in err.value.message


def test_no_secret_in_any_log_line(
    stack: devstack.StackState,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)  # everything, the Azure SDK's HTTP logging included
    good = generate(tmp_path / "logs.csv", 500, bad_rows=5, seed=62)
    storage.upload(cc, good.path)
    bad = tmp_path / "broken.csv"
    bad.write_text("transaction_id;x\n")
    storage.upload(cc, bad)
    for name in names(cc, "incoming/"):
        hostcall.invoke_blob_trigger(settings.container, name)
    broken_db = replace(settings, database=replace(settings.require_database(), port=1, connect_timeout=1))
    again = storage.upload(cc, good.path, name="again.csv")
    pipeline.process_blob(cc.get_blob_client(again), broken_db)
    retry.sweep(settings, now=storage.now_utc() + timedelta(days=1))
    text = "\n".join(f"{r.name} {r.getMessage()}" for r in caplog.records)
    ours = [r for r in caplog.records if r.name == "sales_etl" and "incoming/" in r.getMessage()]
    assert ours and all(
        getattr(r, "run_uuid", None)
        and getattr(r, "dataset", None) == "sales"
        and str(getattr(r, "blob", "")).startswith("incoming/")
        for r in ours
    )
    assert "failed" in text and len(caplog.records) > 10  # the run did log
    secrets = [
        stack.admin_password,
        stack.loader_password,
        stack.account_key,
        stack.fernet_key,
        stack.blind_index_key,
        stack.storage_connection_string,
        "AccountKey=",
    ]
    for secret in secrets:
        assert secret not in text
