"""sales-etl load: local files through the whole pipeline into the real PostgreSQL."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from sales_etl.config.settings import Settings
from sales_etl.core.errors import DataError
from sales_etl.datasets.reader import get_dataset
from sales_etl.flow import pipeline
from sales_etl_dev.generate import BAD_KINDS, generate

from .conftest import query

SALES = get_dataset("sales")


def rejects_of(path: Path) -> dict[int, str]:
    with path.open(newline="", encoding="utf-8") as f:
        return {int(r["line"]): r["reason_code"] for r in csv.DictReader(f)}


def test_load_accounts_for_every_row(settings: Settings, clean: None, tmp_path: Path) -> None:
    g = generate(tmp_path / "s.csv", 3000, bad_rows=len(BAD_KINDS) * 2, seed=11)
    rec = pipeline.load_file(g.path, SALES, settings)
    assert rec.status == "loaded"
    assert (rec.rows_read, rec.rows_loaded, rec.rows_duplicate, rec.rows_rejected) == (
        3000,
        3000 - len(g.bad),
        0,
        len(g.bad),
    )
    assert rejects_of(Path(rec.rejects_path or "")) == g.bad
    # the table holds exactly the loaded rows, tagged with the run, and no plaintext ids
    [(count, plain)] = query(
        settings,
        "SELECT count(*), count(*) FILTER (WHERE customer_id LIKE"
        " 'CUST-%%' OR store_id LIKE 'STORE-%%') FROM sales WHERE"
        " etl_run_id = %s",
        (rec.run_id,),
    )
    assert (count, plain) == (rec.rows_loaded, 0)
    [ledger] = query(
        settings,
        "SELECT status, rows_read, rows_loaded, rows_rejected,"
        " content_sha256 FROM etl_runs WHERE run_id = %s",
        (rec.run_id,),
    )
    assert ledger == ("loaded", 3000, rec.rows_loaded, len(g.bad), rec.content_sha256)


def test_same_file_twice_adds_nothing(settings: Settings, clean: None, tmp_path: Path) -> None:
    g = generate(tmp_path / "a.csv", 500, seed=12)
    first = pipeline.load_file(g.path, SALES, settings)
    copy = tmp_path / "renamed.csv"
    copy.write_bytes(g.path.read_bytes())
    second = pipeline.load_file(copy, SALES, settings)
    assert (second.rows_loaded, second.rows_duplicate) == (0, 500)
    assert second.duplicate_of == first.run_id and second.reason_code == "same_content"
    assert query(settings, "SELECT count(*) FROM sales") == [(500,)]


def test_duplicates_inside_a_file_are_rejected_with_the_first_line(
    settings: Settings, clean: None, tmp_path: Path
) -> None:
    g = generate(tmp_path / "d.csv", 50, seed=13)
    lines = g.path.read_text().splitlines()
    lines.insert(10, lines[3])  # line 11 repeats line 4's transaction
    lines.append(lines[5])  # and the last line repeats line 6's
    g.path.write_text("\n".join(lines) + "\n")
    rec = pipeline.load_file(g.path, SALES, settings)
    assert (rec.rows_read, rec.rows_loaded, rec.rows_rejected) == (52, 50, 2)
    with open(rec.rejects_path or "", newline="") as f:
        rejects = list(csv.DictReader(f))
    assert {(int(r["line"]), r["reason_code"]) for r in rejects} == {
        (11, "duplicate_in_file"),
        (53, "duplicate_in_file"),
    }
    assert all("already appears on line" in r["reason"] for r in rejects)
    assert all(r["raw_row"].startswith("TX-") for r in rejects)


def test_missing_column_fails_the_file_and_loads_nothing(
    settings: Settings, clean: None, tmp_path: Path
) -> None:
    g = generate(tmp_path / "m.csv", 20, seed=14)
    text = g.path.read_text().replace("store_id,", "", 1)
    g.path.write_text(text)
    with pytest.raises(DataError, match="missing required column"):
        pipeline.load_file(g.path, SALES, settings)
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    assert query(settings, "SELECT status, reason_code FROM etl_runs") == [("failed", "missing_columns")]


def test_gzip_file_loads(settings: Settings, clean: None, tmp_path: Path) -> None:
    g = generate(tmp_path / "z.csv", 200, seed=15)
    gz = tmp_path / "z.csv.gz"
    gz.write_bytes(gzip.compress(g.path.read_bytes()))
    rec = pipeline.load_file(gz, SALES, settings)
    assert rec.rows_loaded == 200


def test_chunk_boundaries_lose_nothing(settings: Settings, clean: None, tmp_path: Path) -> None:
    g = generate(tmp_path / "c.csv", 2345, bad_rows=7, seed=16)
    small = Settings(**{**settings.__dict__, "chunk_rows": 100})
    rec = pipeline.load_file(g.path, SALES, small)
    assert rec.rows_loaded == 2345 - 7 and rec.rows_rejected == 7


def test_duplicates_across_chunks_and_partial_overlap(
    settings: Settings, clean: None, tmp_path: Path
) -> None:
    """Fast path (COPY into the target) until a key collides, then staging + merge: the
    counts and the rejects are the same either way."""
    small = Settings(**{**settings.__dict__, "chunk_rows": 100})
    a = generate(tmp_path / "a.csv", 1000, seed=41)
    first = pipeline.load_file(a.path, SALES, small)
    assert (first.rows_loaded, first.rows_duplicate) == (1000, 0)
    b = generate(tmp_path / "b.csv", 1000, seed=42)
    lines = b.path.read_text().splitlines()
    old = a.path.read_text().splitlines()
    lines[500:600] = old[1:101]  # 100 rows already stored, in the middle of the file
    lines.append(lines[3])  # and a duplicate of line 4, 1000 lines later (another chunk)
    b.path.write_text("\n".join(lines) + "\n")
    rec = pipeline.load_file(b.path, SALES, small)
    assert (rec.rows_read, rec.rows_loaded, rec.rows_duplicate, rec.rows_rejected) == (1001, 900, 100, 1)
    assert rejects_of(Path(rec.rejects_path or "")) == {1002: "duplicate_in_file"}
    assert query(settings, "SELECT count(*), count(DISTINCT transaction_id) FROM sales") == [(1900, 1900)]
    # lineage: each row names its run and line
    assert query(
        settings,
        "SELECT etl_run_id, source_line FROM sales WHERE transaction_id = %s",
        (lines[1].split(",")[0],),
    ) == [(rec.run_id, 2)]
