"""The demo's last lines name commands a user can type in a fresh shell."""

from pathlib import Path

import pytest

from sales_etl_dev.demo import command_prefix


def test_bare_name_only_when_this_one_is_on_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import sys

    script = Path(sys.executable).parent / "sales-etl"
    assert script.exists()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # a fresh shell: .venv not activated
    monkeypatch.chdir(script.parent.parent.parent)  # the checkout's root
    assert command_prefix() == str(script.relative_to(script.parent.parent.parent))
    monkeypatch.chdir(tmp_path)  # elsewhere: the absolute path
    assert command_prefix() == str(script)
    monkeypatch.setenv("PATH", f"{script.parent}:/usr/bin:/bin")  # activated
    assert command_prefix() == "sales-etl"
