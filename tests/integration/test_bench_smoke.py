"""The benchmark's quick mode must run to the end (a smoke test: it asserts no time)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sales_etl.config.settings import project_root
from sales_etl_dev import pgbouncer

pytestmark = pytest.mark.slow


def test_quick_benchmark_completes(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--rows", "20000", "--out", str(out)],
        cwd=project_root(),
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    table = out.read_text()
    for case in (
        "floor: COPY",
        "sales-etl load",
        "blob path (function",
        "all rows duplicates",
        "original design",
    ):
        assert case in table
    assert "| 20,000 |" in table
    # the parallel case: 1 and 2 files at once, direct and through PgBouncer (when installed)
    assert "## Files arriving in parallel (2,000 rows each)" in table
    for mode in ("floor", "direct", *(["pgbouncer"] if pgbouncer.find_binary() else [])):
        for files, rows in ((1, "2,000"), (2, "4,000")):
            assert f"| {mode} | {files} | {rows} |" in table
