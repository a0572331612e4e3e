"""The development tools' settings: read in one place, an unusable value named."""

from __future__ import annotations

from pathlib import Path

import pytest

from sales_etl_dev.devsettings import DevSettingsError, dev_settings


def test_unset_means_look_for_them() -> None:
    assert dev_settings({}) == dev_settings({"SALES_ETL_PG_BIN": "", "SALES_ETL_PGBOUNCER": ""})
    assert dev_settings({}).pg_bin is None and dev_settings({}).pgbouncer is None


def test_set_values_are_paths_that_exist(tmp_path: Path) -> None:
    (tmp_path / "postgres").write_text("")
    (tmp_path / "pgbouncer").write_text("")
    got = dev_settings(
        {"SALES_ETL_PG_BIN": str(tmp_path), "SALES_ETL_PGBOUNCER": str(tmp_path / "pgbouncer")}
    )
    assert got.pg_bin == tmp_path and got.pgbouncer == tmp_path / "pgbouncer"


def test_every_unusable_value_is_named_at_once(tmp_path: Path) -> None:
    with pytest.raises(DevSettingsError) as err:
        dev_settings({"SALES_ETL_PG_BIN": str(tmp_path), "SALES_ETL_PGBOUNCER": str(tmp_path / "x")})
    assert "SALES_ETL_PG_BIN" in str(err.value) and "SALES_ETL_PGBOUNCER" in str(err.value)
    assert "holds no `postgres`" in str(err.value)


def test_dev_up_names_the_bad_setting_in_one_line(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SALES_ETL_HOME": str(tmp_path), "SALES_ETL_PG_BIN": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "sales_etl", "dev", "up"], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 1
    assert out.stderr.startswith("Error: SALES_ETL_PG_BIN: ") and "Traceback" not in out.stderr
    assert not (tmp_path / ".devstack" / "stack.json").exists()
