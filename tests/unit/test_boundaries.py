"""Static guard: the scripts the crash tests run in a child process (``python -c``) are
self-contained (every name they use is imported or defined in them: a child that dies of a
NameError is not a crash test). The package's edges are held by test_architecture."""

from __future__ import annotations

import ast
import builtins
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run_as_child(tree: ast.AST) -> set[str]:
    """Names of the strings this file hands to a child Python: the first argument of
    ``start_python``/``run_python``, or the item after ``"-c"`` in an argument list."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and getattr(node.func, "id", None) in ("start_python", "run_python")
            and node.args
            and isinstance(node.args[0], ast.Name)
        ):
            names.add(node.args[0].id)
        elif isinstance(node, ast.List):
            for before, item in zip(node.elts, node.elts[1:], strict=False):
                if isinstance(before, ast.Constant) and before.value == "-c" and isinstance(item, ast.Name):
                    names.add(item.id)
    return names


INTEGRATION = sorted((ROOT / "tests" / "integration").rglob("*.py"))
# handed to a child in any file (interleave.WORKER is run by the test files that import it)
CHILDREN = {name for path in INTEGRATION for name in _run_as_child(ast.parse(path.read_text()))}


def _text(node: ast.expr) -> str | None:
    """A string constant, or ``textwrap.dedent`` of one (dedented as the test does)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if (
        isinstance(node, ast.Call)
        and getattr(node.func, "attr", None) == "dedent"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return textwrap.dedent(node.args[0].value)
    return None


def _scripts(path: Path) -> list[tuple[str, str]]:
    """Module-level strings that a test runs with ``python -c``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id in CHILDREN
        ):
            text = _text(node.value)
            assert text is not None, f"{path.name}:{node.targets[0].id} is run as a script: not a string"
            found.append((node.targets[0].id, text))
    return found


def _undefined(code: str) -> set[str]:
    tree = ast.parse(code)
    defined = set(dir(builtins))
    for n in ast.walk(tree):
        if isinstance(n, ast.Import | ast.ImportFrom):
            defined |= {(a.asname or a.name).split(".")[0] for a in n.names}
        elif isinstance(n, ast.FunctionDef):
            defined.add(n.name)
            args = n.args
            defined |= {a.arg for a in [*args.posonlyargs, *args.args, *args.kwonlyargs]}
            defined |= {a.arg for a in (args.vararg, args.kwarg) if a is not None}
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            defined.add(n.id)
        elif isinstance(n, ast.ClassDef | ast.ExceptHandler) and n.name:
            defined.add(n.name)
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
    return used - defined


SCRIPTS = [(f"{path.name}:{name}", code) for path in INTEGRATION for name, code in _scripts(path)]


def test_the_crash_tests_have_their_scripts() -> None:
    found = {label for label, _ in SCRIPTS}
    assert {
        "test_guarantees_moves.py:CRASH_AFTER_COPY",
        "interleave.py:WORKER",
        "test_faults.py:LOAD_WORKER",
        "test_function_path_deps.py:SCRIPT",
    } <= found


@pytest.mark.parametrize(("label", "code"), SCRIPTS, ids=[label for label, _ in SCRIPTS])
def test_child_process_scripts_are_self_contained(label: str, code: str) -> None:
    undefined = _undefined(code)  # a script that does not parse fails here: it is run
    assert not undefined, f"{label} uses {sorted(undefined)} without importing them"
