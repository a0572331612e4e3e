"""The command line against the real local stack (settings from the environment)."""

from __future__ import annotations

import json
from pathlib import Path

from azure.storage.blob import ContainerClient
from click.testing import CliRunner

from sales_etl.cli.commands import main
from sales_etl.config.settings import Settings
from sales_etl_dev import devstack
from sales_etl_dev.demo import run_demo

from .conftest import names, query


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_generate_upload_process_runs_show(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    out = tmp_path / "g.csv"
    code, text = cli("generate", "--rows", "120", "--bad-rows", "3", "--seed", "5", "--out", str(out))
    assert code == 0 and "wrote 120 rows (3 bad)" in text
    code, text = cli("upload", str(out), "--dataset", "sales")
    assert code == 0 and "incoming/sales/g.csv" in text
    code, text = cli("process", "incoming/sales/g.csv")
    [(run_uuid,)] = query(settings, "SELECT run_uuid::text FROM etl_runs")
    assert code == 0 and "loaded" in text and f"rejected/sales/g.csv.{run_uuid}.rejects.csv" in text
    code, text = cli("runs", "--json", "--limit", "5")
    runs = [json.loads(line) for line in text.splitlines()]
    assert code == 0 and [(r["status"], r["rows_loaded"], r["rows_rejected"]) for r in runs] == [
        ("loaded", 117, 3)
    ]
    [(tx, token)] = query(settings, "SELECT transaction_id, customer_id FROM sales LIMIT 1")
    plain = next(line.split(",")[1] for line in out.read_text().splitlines() if line.startswith(tx))
    assert token != plain
    code, text = cli("show", tx)
    assert code == 0 and f"customer_id: {plain}" in text


def test_load_reports_failures_with_exit_status(settings: Settings, clean: None, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("transaction_id,customer_id\nTX-1,C\n")
    code, text = cli("load", str(bad))
    assert code == 1 and "missing required column" in text
    good = tmp_path / "good.csv"
    assert cli("generate", "--rows", "40", "--seed", "6", "--out", str(good))[0] == 0
    code, text = cli("load", str(good))
    assert code == 0 and query(settings, "SELECT count(*) FROM sales") == [(40,)]


def test_retry_failed_and_init_storage(settings: Settings, clean: None, cc: ContainerClient) -> None:
    assert cli("init-storage") == (0, "container sales exists\n")
    cc.get_blob_client("failed/sales/f.csv").upload_blob(
        b"x", metadata={"attempts": "1", "kind": "data", "dataset_version": "0", "app_version": "0"}
    )
    code, text = cli("retry-failed")
    assert code == 0 and "retried 1" in text
    assert names(cc) == ["incoming/sales/f.csv"]


def test_demo_twice_loads_nothing_new(stack: devstack.StackState, settings: Settings, clean: None) -> None:
    lines: list[str] = []
    first = run_demo(rows=3000, bad_rows=20, echo=lines.append, state=stack)
    assert sorted((r["rows_loaded"], r["rows_rejected"]) for r in first) == [(1980, 20), (3000, 0)]
    second = run_demo(rows=3000, bad_rows=20, echo=lines.append, state=stack)
    assert [(r["status"], r["rows_loaded"]) for r in second] == [("loaded", 0), ("loaded", 0)]
    assert sum(r["rows_duplicate"] for r in second) == 3000 + 1980
    assert any("were duplicates" in line for line in lines)
    assert query(settings, "SELECT count(*) FROM sales") == [(4980,)]
