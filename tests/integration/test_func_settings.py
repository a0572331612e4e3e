"""`sales-etl dev func-settings`: the local.settings.json Core Tools reads, for the running
stack: every setting both functions need, in Core Tools' format, secrets kept private."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from sales_etl.cli.commands import main
from sales_etl.config.settings import host_connections, load_settings, project_root, read_bindings
from sales_etl_dev import devstack


def test_func_settings_writes_what_both_functions_need(
    stack: devstack.StackState, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(devstack, "read_state", lambda *a, **k: stack)
    target = tmp_path / "local.settings.json"
    result = CliRunner().invoke(main, ["dev", "func-settings", "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    data = json.loads(target.read_text())
    assert set(data) == {"IsEncrypted", "Values"} and data["IsEncrypted"] is False
    values = data["Values"]
    assert all(isinstance(v, str) for v in values.values())  # Core Tools reads strings
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert "POSTGRES_ADMIN_PASSWORD" not in values  # the app loads as the loader role
    # the host: both bindings and both connections resolve
    b = read_bindings(values)
    assert b.problems == () and b.container and b.schedule and b.source == "LogsAndContainerScan"
    assert all(ok for _, ok, _ in host_connections(values)), host_connections(values)
    # the package: storage, database and keys, matching the running stack
    s = load_settings(values)
    assert s.storage is not None and s.require_database().port == stack.pg_port
    assert s.require_keys()[0][0].decode() == stack.fernet_key
    # the same command refuses to overwrite unless told
    again = CliRunner().invoke(main, ["dev", "func-settings", "--output", str(target)])
    assert again.exit_code != 0 and "--force" in again.output
    assert (
        CliRunner().invoke(main, ["dev", "func-settings", "--output", str(target), "--force"]).exit_code == 0
    )


def test_func_settings_needs_the_stack(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(devstack, "read_state", lambda *a, **k: None)
    result = CliRunner().invoke(main, ["dev", "func-settings", "--output", str(tmp_path / "x.json")])
    assert result.exit_code != 0 and "not running" in result.output
    assert not (tmp_path / "x.json").exists()


def test_local_settings_json_is_never_committed() -> None:
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "local.settings.json"], cwd=project_root(), check=False
    )
    assert ignored.returncode == 0
