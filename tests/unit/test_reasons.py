"""The reason-code registry (sales_etl/reasons.py) against its Literal types, the code that
raises codes, the column rules, and the README's list, both ways."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from sales_etl import reasons
from sales_etl.reasons import REASONS, codes, meaning, row_code, typed_codes
from sales_etl.rules import RULES

ROOT = Path(__file__).resolve().parents[2]
_CODE = re.compile(r"`([a-z][a-z0-9_]*)`")


def _between(text: str, start: str, end: str) -> str:
    assert text.count(start) == 1, start
    head = text.index(start) + len(start)
    return text[head:text.index(end, head)]


def readme_codes() -> dict[str, set[str]]:
    """The README's reason codes by level ("How a file flows"), as written."""
    text = (ROOT / "README.md").read_text()
    return {
        "row": set(_CODE.findall(_between(text, "Reason codes:", "The `line` is"))),
        "file": set(_CODE.findall(_between(text, "Whole-file failures (the file goes to",
                                           "Commands that refuse"))),
        "command": set(_CODE.findall(_between(text, "Commands that refuse", "Every code,"))),
    }


@pytest.mark.parametrize("level", ["row", "file", "command"])
def test_the_readme_lists_exactly_the_registered_codes(level: reasons.Level) -> None:
    listed = readme_codes()[level]
    registered = codes(level)
    assert listed - registered == set(), "in the README, not registered"
    assert registered - listed == set(), "registered, not in the README"


@pytest.mark.parametrize("level", ["row", "file", "command"])
def test_the_literal_types_are_the_registry(level: reasons.Level) -> None:
    assert typed_codes(level) == codes(level)


def test_each_code_once_per_level_with_a_one_line_meaning() -> None:
    seen = [(r.code, r.level) for r in REASONS]
    assert len(seen) == len(set(seen))
    for r in REASONS:
        assert r.meaning and "\n" not in r.meaning and len(r.meaning) < 100, r
        assert meaning(r.code, r.level) == r.meaning


def test_row_code_refuses_an_unregistered_code() -> None:
    assert row_code("bad_value") == "bad_value"
    with pytest.raises(ValueError, match="bad_valeu"):
        row_code("bad_valeu")
    with pytest.raises(KeyError):
        meaning("empty_file", "row")


def test_every_column_rule_raises_a_registered_row_code() -> None:
    for rule in RULES:
        if rule.data is not None:
            assert rule.code in codes("row"), rule.key
        if rule.code is not None:
            assert rule.code in codes("row"), rule.key


def _literal_codes(tree: ast.AST) -> list[tuple[int, str]]:
    """Code strings written where codes are raised: ``code="..."`` and ``reason_code="..."``
    keywords, ``x.reason_code = "..."`` (also in a tuple assignment), the reason of
    ``Reject(line, "...", ...)`` and of ``flags.set(mask, "...", ...)``."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                pairs = (list(zip(target.elts, node.value.elts, strict=False))
                         if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                         else [(target, node.value)])
                found.extend((node.lineno, v.value) for t, v in pairs
                             if isinstance(t, ast.Attribute) and t.attr == "reason_code"
                             and isinstance(v, ast.Constant) and isinstance(v.value, str))
        if not isinstance(node, ast.Call):
            continue
        for kw in node.keywords:
            if kw.arg in ("code", "reason_code") and isinstance(kw.value, ast.Constant) and (
                    isinstance(kw.value.value, str)):
                found.append((node.lineno, kw.value.value))
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(
            node.func, "id", "")
        if name in ("Reject", "set") and len(node.args) >= 2 and isinstance(
                node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
            found.append((node.lineno, node.args[1].value))
    return found


def test_every_code_written_in_the_package_is_registered() -> None:
    """mypy refuses an unregistered code where it is typed; this also covers any place that
    builds an error without the type (a typo there would be a silent new code)."""
    every = codes("row") | codes("file") | codes("command")
    unknown = []
    for path in sorted((ROOT / "sales_etl").rglob("*.py")):
        for line, code in _literal_codes(ast.parse(path.read_text())):
            if code not in every:
                unknown.append(f"{path.relative_to(ROOT)}:{line}: {code}")
    assert unknown == []


def test_the_literal_scan_finds_codes() -> None:
    """(The scan above cannot pass by finding nothing.)"""
    tree = ast.parse('raise DataError("x", code="nope")\nflags.set(m, "typo", "r")\n'
                     'Reject(1, "also", "r", ())\nrec.status, rec.reason_code = "x", "tuple"\n'
                     'rec.reason_code = "plain"\nRunRecord(reason_code="kw")\n')
    assert sorted(c for _, c in _literal_codes(tree)) == sorted(
        ["nope", "typo", "also", "tuple", "plain", "kw"])
