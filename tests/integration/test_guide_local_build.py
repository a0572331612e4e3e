"""The guide's local build for `func azure functionapp publish --no-build` (docs/operations.md,
remote build): its pip command, as written, must find a wheel for every requirement. Run as
a dry run against the package index pip is configured with; skipped when no index answers."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tools.package import ROOT

PYTHON_VERSION = "3.13"  # the app's Python (requirements.txt pins its worker runtime for it)


def _guide_command() -> list[str]:
    text = (ROOT / "docs" / "operations.md").read_text()
    match = re.search(r"^pip install --target=\.python_packages/.*?(?<!\\)$", text, re.M | re.S)
    assert match, "the guide's local-build pip command"
    args = shlex.split(match.group(0).replace("\\\n", " "))
    return [a.replace("$PYVER", PYTHON_VERSION) for a in args[2:]]  # after "pip install"


def _pip(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--dry-run",
            "--quiet",
            "--disable-pip-version-check",
            "--ignore-installed",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_the_guides_local_build_finds_a_wheel_for_every_requirement(tmp_path: Path) -> None:
    args = _guide_command()
    assert "--only-binary=:all:" in args and "--platform" in args
    # is there an index at all? (the machine's own platform, one small requirement)
    probe = _pip(["--no-deps", "--target", str(tmp_path / "probe"), "idna"], tmp_path)
    if probe.returncode != 0:
        if os.environ.get("CI"):  # CI reaches the package index: a failure there is real
            pytest.fail(f"no package index answers: {probe.stderr[-300:]}")
        pytest.skip(f"no package index answers here: {probe.stderr[-300:]}")
    args = [f"--target={tmp_path / 'pp'}" if a.startswith("--target=") else a for a in args]
    run = _pip(args, tmp_path)
    errors = [line for line in run.stderr.splitlines() if line.startswith("ERROR")]
    assert run.returncode == 0, "\n".join(errors)
