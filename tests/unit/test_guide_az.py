"""docs/check_az_commands.py: it finds every `az` command of the guide (also inside $(...)),
and it fails on a flag or a value the CLI's help does not list (a stand-in `az` that prints
help text; the real Azure CLI is checked by running the script where it is installed)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tools.package import ROOT

sys.path.insert(0, str(ROOT / "docs"))
from check_az_commands import check, commands

HELP = """
Command
    az functionapp create : Create a function app.

Arguments
    --name -n                     [Required] : Name of the new function app.
    --https-only                             : Redirect all traffic made to an app using HTTP
                                               to HTTPS.  Allowed values: false, true.
    --instance-memory                        : The instance memory size in MB.

Global Arguments
    --query                                  : JMESPath query string.
"""


@pytest.fixture
def fake_az(tmp_path: Path) -> str:
    script = tmp_path / "az"
    script.write_text(f"""#!/bin/sh
if [ "$1 $2" = "functionapp create" ]; then cat <<'HELP'
{HELP}
HELP
exit 0; fi
echo "'$1' is misspelled or not recognized by the system." >&2; exit 2
""")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script)


def test_every_az_command_of_the_guide_is_found() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    found = commands(guide)
    paths = {c.path for c in found}
    assert ("functionapp", "create") in paths and ("eventgrid", "event-subscription", "create") in paths
    assert ("identity", "show") in paths  # inside $(...)
    assert ("functionapp", "keys", "list") in paths
    assert len(found) >= 40


def test_every_az_command_of_the_docs_is_in_the_guide() -> None:
    """The checker reads docs/operations.md: an `az` command on another page would go unchecked."""
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    elsewhere = [p.name for p in pages if p.name != "operations.md" and commands(p.read_text())]
    assert elsewhere == []


def test_the_checker_fails_on_an_unknown_flag_value_or_command(fake_az: str) -> None:
    good = (
        "```bash\naz functionapp create --name x --https-only true --instance-memory 2048 --query id\n```\n"
    )
    assert check(fake_az, good) == []
    bad = (
        "```bash\nAPP=$(az functionapp create --name x --instance-mem 2048 --https-only yes)\n"
        "az functionap create --name x\n```\n"
    )
    problems = check(fake_az, bad)
    assert any("unknown flag --instance-mem" in p for p in problems)
    assert any("--https-only yes" in p for p in problems)
    assert any("az functionap create: not a command" in p for p in problems)


@pytest.mark.skipif(
    not os.environ.get("AZ_CLI"),
    reason="set AZ_CLI=<path to az> to check the guide against a real Azure CLI (pip install azure-cli)",
)
def test_the_guide_against_the_real_azure_cli() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "check_az_commands.py"), "--az", os.environ["AZ_CLI"]],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
