"""The ``console`` examples of the README and of every page under docs/, executed against a
fresh local stack, as an operator would type them after ``make demo``: the docs are the
source of truth, and a command they show that fails, or prints something else than they
show, fails this test. Each page runs on its own (an empty ledger, table and container, a
project folder and a working folder of its own: the session's stack, cleaned), its blocks
in the order they appear, so a page may build on its own earlier commands but never on
another page's. Commands that cannot run locally (``az`` and the like) are shown in
``bash`` blocks, never ``console``.

Format: in a ```console block, a line ``$ command`` runs in bash (stderr merged into
stdout); the lines after it, up to the next ``$``, are what it must print. ``...`` in a line
stands for any text; a line of ``...`` alone for any number of lines. Every command must
exit 0 (a page shows a failure's status with ``; echo "exit status $?"``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sales_etl.config.settings import project_root
from sales_etl_dev import devstack

from .clirun import assert_clean, environment, project, run

ROOT = project_root()
README = ROOT / "README.md"
PAGES = [README, *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```console\n(.*?)^```", re.M | re.S)


def examples(text: str) -> list[tuple[str, list[str]]]:
    """(command, expected lines) for every ``$`` line of every console block, in order."""
    out: list[tuple[str, list[str]]] = []
    for block in BLOCK.findall(text):
        for line in block.splitlines():
            if line.startswith("$ "):
                out.append((line[2:], []))
            elif out:
                out[-1][1].append(line)
            else:
                raise AssertionError(f"console block starts with output, not a command: {line}")
    return out


def pattern(expected: list[str]) -> re.Pattern[str]:
    parts = []
    while expected and not expected[-1].strip():  # trailing blank lines are not compared
        expected = expected[:-1]
    for line in expected:
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(re.escape(line.rstrip()).replace(r"\.\.\.", r"[^\n]*") + r"\n")
    return re.compile("".join(parts))


def normalise(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def test_matcher_is_strict() -> None:
    """The comparison itself: exact lines, ``...`` wildcards, nothing extra allowed."""
    assert pattern(["a ... c"]).fullmatch("a b b c\n")
    assert not pattern(["a ... c"]).fullmatch("a b c\nextra\n")
    assert pattern(["x", "...", "z"]).fullmatch("x\n1\n2\nz\n")
    assert pattern(["x", "...", "z"]).fullmatch("x\nz\n")
    assert not pattern(["x", "z"]).fullmatch("x\ny\nz\n")
    assert not pattern(["exit status 0"]).fullmatch("exit status 1\n")


def _name(page: Path) -> str:
    return page.relative_to(ROOT).as_posix()


RUN = [page for page in PAGES if BLOCK.search(page.read_text())]  # the pages with examples


def test_the_docs_have_examples_of_the_command_line() -> None:
    readme = [c for c, _ in examples(README.read_text())]
    for verb in ("generate", "upload", "process", "runs", "show"):  # the local loop
        assert any(c.startswith(f"sales-etl {verb}") for c in readme), verb
    commands = [c for page in RUN for c, _ in examples(page.read_text())]
    assert len(commands) >= 15
    for verb in ("doctor", "requeue", "load"):
        assert any(c.startswith(f"sales-etl {verb}") for c in commands), verb
    assert {README, ROOT / "docs" / "cli.md"} <= set(RUN)


@pytest.mark.usefixtures("clean")
@pytest.mark.parametrize("page", RUN, ids=_name)
def test_the_examples_run_as_shown(page: Path, stack: devstack.StackState, tmp_path: Path) -> None:
    home = project(tmp_path / "checkout", stack)
    work = tmp_path / "work"
    work.mkdir()
    env = environment(home)
    for command, expected in examples(page.read_text()):
        result = run("exec 2>&1\n" + command, env, work)
        assert_clean(result, command)
        shown = normalise(result.out)
        assert result.code == 0, f"{_name(page)}: command failed ({result.code}): {command}\n{shown}"
        assert pattern(expected).fullmatch(shown), (
            f"{_name(page)}: command printed something else: {command}\n--- the page shows:\n"
            + "\n".join(expected)
            + "\n--- it printed:\n"
            + shown
        )
