"""The function app runs with only requirements.txt installed: in a fresh process where the
command line's packages (requirements-cli.txt) cannot be imported, the blob trigger loads a
real file from Azurite into PostgreSQL as the host would invoke it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path

from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings, project_root
from sales_etl.storage import container as storage
from sales_etl_dev.devstack import StackState
from sales_etl_dev.generate import generate

from .conftest import names, query

CLI_ONLY = ("pandas", "click", "tqdm", "sqlalchemy")
SCRIPT = textwrap.dedent("""
    import importlib.abc, sys
    BLOCKED = set(sys.argv[3].split(","))

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is not deployed (requirements-cli.txt)")
            return None

    sys.meta_path.insert(0, Block())
    from sales_etl_dev import hostcall
    hostcall.invoke_blob_trigger(sys.argv[1], sys.argv[2])
    leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not leaked, leaked
    print("ok")
""")


def test_the_blob_trigger_runs_without_the_cli_packages(
    stack: StackState, settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    blob = storage.upload(cc, generate(tmp_path / "lean.csv", 500, bad_rows=3, seed=51).path)
    env = {**os.environ, **stack.env()}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, settings.container, blob, ",".join(CLI_ONLY)],
        cwd=project_root(),
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0 and result.stdout.strip().endswith("ok"), result.stderr[-3000:]
    assert names(cc, "processed/") == [f"processed/sales/{datetime.now(UTC):%Y/%m/%d}/lean.csv"]
    assert query(settings, "SELECT status, rows_read, rows_loaded, rows_rejected FROM etl_runs") == [
        ("loaded", 500, 497, 3)
    ]
    assert query(settings, "SELECT count(*) FROM sales") == [(497,)]
