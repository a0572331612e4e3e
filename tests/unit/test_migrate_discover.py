"""Where the migrations are not (a `sales-etl` installed from a wheel carries the package,
not the `migrations/` folder beside it): `migrate` and `doctor` say so, in one line, instead
of applying nothing to an empty database and reporting it "up to date"."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sales_etl.core.errors import ConfigError
from sales_etl.db import migrate

ROOT = Path(__file__).resolve().parents[2]


def test_the_checkout_finds_its_migrations() -> None:
    found = migrate.discover(migrate.default_dir())
    assert found and found[0].version == 1


def test_a_missing_shipped_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_ETL_HOME", str(tmp_path))  # as site-packages/ after `pip install .`
    with pytest.raises(ConfigError) as info:
        migrate.discover(migrate.default_dir())
    assert info.value.code == "no_migrations"
    assert "migrations folder not found" in info.value.message
    assert "pip install -e ." in info.value.message


def test_an_empty_shipped_folder_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALES_ETL_HOME", str(tmp_path))
    (tmp_path / "migrations").mkdir()
    with pytest.raises(ConfigError, match="no migration in"):
        migrate.discover(migrate.default_dir())


def test_an_extra_folder_may_be_empty(tmp_path: Path) -> None:
    assert migrate.discover(tmp_path) == []
    with pytest.raises(ConfigError, match="not found"):
        migrate.discover(tmp_path / "gone")


def test_the_command_says_so_in_one_line(tmp_path: Path) -> None:
    # Nothing listens there: the error comes before any connection.
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "Sales"))},
        "SALES_ETL_HOME": str(tmp_path),
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_PORT": "9",
        "POSTGRES_USER": "u",
        "POSTGRES_PASSWORD": "p",
        "POSTGRES_DB": "d",
    }
    code = "import sys; sys.argv = ['sales-etl', 'migrate']; from sales_etl.cli.commands import main; main()"
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "up to date" not in out.stdout
    assert out.stderr.startswith("Error: migrations folder not found"), out.stderr
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_doctor_names_the_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from sales_etl.cli.doctor import _fix_for

    monkeypatch.setenv("SALES_ETL_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        migrate.discover(migrate.default_dir())
    assert "pip install -e ." in _fix_for(info.value)
