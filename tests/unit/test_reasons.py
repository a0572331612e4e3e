"""The reason-code registry (sales_etl/core/reasons.py) against its Literal types, the code that
raises codes, the column rules, and the list of docs/reason-codes.md, both ways; and each
table of file codes on that page against the class of error the package raises its codes
with."""

from __future__ import annotations

import ast
import re
from collections.abc import Sequence
from pathlib import Path

import pytest

from sales_etl.core import reasons
from sales_etl.core.reasons import REASONS, codes, meaning, row_code, typed_codes
from sales_etl.stages.rules import RULES

ROOT = Path(__file__).resolve().parents[2]
_CODE = re.compile(r"`([a-z][a-z0-9_]*)`")


def _section(text: str, heading: str) -> str:
    """The text under a ``## heading``, up to the next heading of that level."""
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def page_codes() -> dict[str, set[str]]:
    """The codes docs/reason-codes.md lists by level: the first cell of each table row under
    "Row codes", "File codes" (its three tables) and "Command codes"."""
    text = (ROOT / "docs" / "reason-codes.md").read_text()
    out = {}
    for level, heading in (("row", "Row codes"), ("file", "File codes"), ("command", "Command codes")):
        cells = [
            line.split("|")[1] for line in _section(text, heading).splitlines() if line.startswith("| `")
        ]
        out[level] = {code for cell in cells for code in _CODE.findall(cell)}
    return out


@pytest.mark.parametrize("level", ["row", "file", "command"])
def test_the_reason_codes_page_lists_exactly_the_registered_codes(level: reasons.Level) -> None:
    listed = page_codes()[level]
    registered = codes(level)
    assert listed - registered == set(), "in docs/reason-codes.md, not registered"
    assert registered - listed == set(), "registered, not in docs/reason-codes.md"


def test_the_page_is_read_as_tables() -> None:
    """(The comparison cannot pass by reading nothing.)"""
    found = page_codes()
    assert {"missing_value", "bad_quoting"} <= found["row"] and "empty_file" not in found["row"]
    assert {"empty_file", "db_conflict", "same_content"} <= found["file"]
    assert found["command"] == codes("command")


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


def _reason_code_assigned(node: ast.AST) -> list[ast.expr]:
    """The values ``x.reason_code = ...`` assigns (also in a tuple assignment)."""
    if not isinstance(node, ast.Assign):
        return []
    values: list[ast.expr] = []
    for target in node.targets:
        pairs = (
            list(zip(target.elts, node.value.elts, strict=False))
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
            else [(target, node.value)]
        )
        values.extend(v for t, v in pairs if isinstance(t, ast.Attribute) and t.attr == "reason_code")
    return values


def _code_values(tree: ast.AST) -> list[tuple[int, ast.expr]]:
    """The expressions written where codes are raised: ``code=...`` and ``reason_code=...``
    keywords, ``x.reason_code = ...`` (also in a tuple assignment), the reason of
    ``Reject(line, ..., ...)`` and of ``flags.set(mask, ..., ...)``."""
    found: list[tuple[int, ast.expr]] = []
    for node in ast.walk(tree):
        found.extend((v.lineno, v) for v in _reason_code_assigned(node))
        if not isinstance(node, ast.Call):
            continue
        found.extend((node.lineno, kw.value) for kw in node.keywords if kw.arg in ("code", "reason_code"))
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if name in ("Reject", "set") and len(node.args) >= 2:
            found.append((node.lineno, node.args[1]))
    return found


def _strings(value: ast.expr) -> list[str]:
    """The literal codes an expression can be: a string, or either branch of ``a if c else
    b``."""
    if isinstance(value, ast.Constant) and isinstance(value.value, str):
        return [value.value]
    if isinstance(value, ast.IfExp):
        return _strings(value.body) + _strings(value.orelse)
    return []


def _built(value: ast.expr) -> bool:
    """A code made at run time: an f-string, ``+`` or ``%`` of strings, ``.format()``,
    ``.join()``, ``str()`` (mypy cannot tell such a value from a registered code where it is
    typed ``str``; a Literal-typed place refuses it)."""
    if isinstance(value, ast.IfExp):
        return _built(value.body) or _built(value.orelse)
    if isinstance(value, ast.JoinedStr | ast.BinOp):
        return True
    if isinstance(value, ast.Call):
        func = value.func
        return (isinstance(func, ast.Attribute) and func.attr in ("format", "join")) or (
            isinstance(func, ast.Name) and func.id == "str"
        )
    return False


def _literal_codes(tree: ast.AST) -> list[tuple[int, str]]:
    return [(line, code) for line, value in _code_values(tree) for code in _strings(value)]


def _package_trees() -> list[tuple[Path, ast.AST]]:
    return [(path, ast.parse(path.read_text())) for path in sorted((ROOT / "sales_etl").rglob("*.py"))]


def test_every_code_written_in_the_package_is_registered() -> None:
    """mypy refuses an unregistered code where it is typed; this also covers any place that
    builds an error without the type (a typo there would be a silent new code)."""
    every = codes("row") | codes("file") | codes("command")
    unknown = []
    for path, tree in _package_trees():
        for line, code in _literal_codes(tree):
            if code not in every:
                unknown.append(f"{path.relative_to(ROOT)}:{line}: {code}")
    assert unknown == []


def test_the_literal_scan_finds_codes() -> None:
    """(The scan above cannot pass by finding nothing.)"""
    tree = ast.parse(
        'raise DataError("x", code="nope")\nflags.set(m, "typo", "r")\n'
        'Reject(1, "also", "r", ())\nrec.status, rec.reason_code = "x", "tuple"\n'
        'rec.reason_code = "plain"\nRunRecord(reason_code="kw")\n'
        'flags.set(m, "a_int" if i else "a_dec", "r")\n'
    )
    assert sorted(c for _, c in _literal_codes(tree)) == sorted(
        ["nope", "typo", "also", "tuple", "plain", "kw", "a_int", "a_dec"]
    )


def test_no_code_is_built_at_run_time() -> None:
    """A code assembled at run time (``f"db_{kind}"``) is a code docs/reason-codes.md cannot list and
    the literal scan cannot see: none is written where codes are raised."""
    built = [
        f"{path.relative_to(ROOT)}:{line}"
        for path, tree in _package_trees()
        for line, value in _code_values(tree)
        if _built(value)
    ]
    assert built == []
    planted = ast.parse(
        'rec.reason_code = f"skip_{why}"\nraise Skipped("m", code="db_" + k)\n'
        'flags.set(m, "{}_x".format(k), "r")\nReject(1, str(k), "r", ())\n'
        'rec.status, rec.reason_code = "s", "%s" % k\n'
        'DataError("m", code="a" if k else f"b{k}")\n'
    )
    assert sorted(line for line, value in _code_values(planted) if _built(value)) == [1, 2, 3, 4, 5, 6]


def test_codes_are_typed_where_they_are_held() -> None:
    """mypy refuses an unregistered (or computed) code only where the value is typed by the
    registry: the ledger's record, a reject, an error, the transform's flags, a move."""
    from typing import get_args, get_type_hints

    from sales_etl.core.errors import EtlError
    from sales_etl.core.reasons import Code, Moved, RowCode
    from sales_etl.db.ledger import RunRecord
    from sales_etl.stages.records import Reject
    from sales_etl.stages.transform import _Flags
    from sales_etl.storage.blobs import IncomingBlob

    assert get_type_hints(RunRecord)["reason_code"] == Code | None
    assert get_type_hints(Reject)["code"] == RowCode
    assert get_type_hints(EtlError.__init__)["code"] == Code
    assert get_type_hints(_Flags.set)["code"] == RowCode
    assert get_type_hints(IncomingBlob.current)["return"] == Moved | None
    assert set(typed_codes("file")) >= set(get_args(Moved))


def test_every_registered_code_is_raised_somewhere() -> None:
    """The other way round: a code docs/reason-codes.md and the registry list must be written where
    the package raises codes (a literal at a raising place, either branch of a conditional,
    a typed default or return value, a SQL literal that the loader reads back), or declared
    by a shipped dataset (``mismatch``). A listed code nothing raises is a stale promise."""
    import tomllib

    from sales_etl.datasets.reader import SHIPPED_DIR

    raised: set[str] = set()
    sql = re.compile(r"'([a-z][a-z0-9_]*)'")
    for path, tree in _package_trees():
        if path.name == "reasons.py":
            continue
        raised.update(code for _, code in _literal_codes(tree))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                args = node.args.args + node.args.kwonlyargs
                defaults = node.args.defaults + [d for d in node.args.kw_defaults if d]
                if any(a.arg == "code" for a in args):  # a code parameter's default
                    raised.update(c for d in defaults for c in _strings(d))
                returns = ast.unparse(node.returns) if node.returns else ""
                if any(t in returns for t in ("Code", "Moved")):  # a code-typed return
                    raised.update(
                        c
                        for r in ast.walk(node)
                        if isinstance(r, ast.Return) and r.value is not None
                        for c in _strings(r.value)
                    )
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("row_code", "file_code"):
                raised.update(c for a in node.args for c in _strings(a))
            if (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", "") == "get"
                and len(node.args) == 2
                and _strings(node.args[0]) == ["mismatch"]
            ):
                raised.update(_strings(node.args[1]))  # the dataset's default mismatch code
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ("SELECT" in node.value):
                raised.update(sql.findall(node.value))
    for spec in SHIPPED_DIR.glob("*.toml"):
        for column in tomllib.loads(spec.read_text())["columns"].values():
            raised.update([column["mismatch"]] if "mismatch" in column else [])
    every = codes("row") | codes("file") | codes("command")
    assert sorted(every - raised) == []


# ------------------------------------------------ the file-code tables against the error classes

# The kind of error each table of "File codes" lists: ``EtlError.kind`` of the class the
# package raises its codes with (data: parked in failed/; transient: retried; config: the
# invocation fails), or "skipped": nothing raised as an error, a skip or a note on a load.
FILE_TABLES = {
    "Data errors": "data",
    "Transient errors": "transient",
    "Configuration errors": "config",
    "Skipped, or a note on a load": "skipped",
}


def file_tables(text: str | None = None) -> dict[str, set[str]]:
    """The codes of each ``### table`` under "File codes" of docs/reason-codes.md."""
    text = (ROOT / "docs" / "reason-codes.md").read_text() if text is None else text
    out: dict[str, set[str]] = {}
    heading = None
    for line in _section(text, "File codes").splitlines():
        if line.startswith("### "):
            heading = line[4:].strip()
            out[heading] = set()
        elif line.startswith("| `") and heading is not None:
            out[heading] |= set(_CODE.findall(line.split("|")[1]))
    return out


def _error_classes() -> dict[str, tuple[str, str]]:
    """Every error class of the package by name: (its ``kind``, the code it has when raised
    without ``code=``). Those of ``core/errors.py`` as they are; a subclass defined anywhere
    in the package inherits both, unless its body sets ``kind`` or its ``__init__`` passes
    its own ``code=`` to ``super().__init__``."""
    import inspect

    from sales_etl.core import errors

    default = inspect.signature(errors.EtlError.__init__).parameters["code"].default
    classes = {
        name: (cls.kind, default)
        for name, cls in vars(errors).items()
        if isinstance(cls, type) and issubclass(cls, errors.EtlError)
    }
    for name, cls in vars(errors).items():  # UnsafeName: super().__init__(message, code="unsafe_name")
        if name in classes and "__init__" in vars(cls):
            source = ast.parse(inspect.getsource(cls).strip())
            own = [c for call in ast.walk(source) if isinstance(call, ast.Call) for c in _super_codes(call)]
            if own:
                classes[name] = (cls.kind, own[0])
    changed = True
    while changed:  # subclasses elsewhere in the package
        changed = False
        for _, tree in _package_trees():
            for node in ast.walk(tree):
                if not isinstance(node, ast.ClassDef) or node.name in classes:
                    continue
                bases = [getattr(b, "id", getattr(b, "attr", "")) for b in node.bases]
                base = next((b for b in bases if b in classes), None)
                if base is None:
                    continue
                kind, code = classes[base]
                for stmt in node.body:
                    if isinstance(stmt, ast.Assign) and any(
                        getattr(t, "id", "") == "kind" for t in stmt.targets
                    ):
                        kind = next(iter(_strings(stmt.value)), kind)
                own = [c for call in ast.walk(node) if isinstance(call, ast.Call) for c in _super_codes(call)]
                classes[node.name] = (kind, own[0] if own else code)
                changed = True
    return classes


def _super_codes(call: ast.Call) -> list[str]:
    """The literal ``code=`` of a ``super().__init__(...)`` call."""
    func = call.func
    if not (isinstance(func, ast.Attribute) and func.attr == "__init__"):
        return []
    if not (isinstance(func.value, ast.Call) and getattr(func.value.func, "id", "") == "super"):
        return []
    return [c for kw in call.keywords if kw.arg == "code" for c in _strings(kw.value)]


def raised_kinds(trees: Sequence[tuple[Path, ast.AST]] | None = None) -> dict[str, set[str]]:
    """For each code, the kinds of the errors the package makes with it: every
    ``Cls(..., code="x")`` of an error class (either branch of a conditional), and
    ``Cls(...)`` without ``code=`` for the class's own code. A code passed as a variable is
    not seen here (``Skipped(..., code=gone)``: see ``recorded_skips``)."""
    classes = _error_classes()
    out: dict[str, set[str]] = {}
    for _, tree in _package_trees() if trees is None else trees:
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name not in classes:
                continue
            kind, default = classes[name]
            given = [kw.value for kw in node.keywords if kw.arg == "code"]
            for code in _strings(given[0]) if given else [default]:
                out.setdefault(code, set()).add(kind)
    return out


def recorded_skips(trees: Sequence[tuple[Path, ast.AST]] | None = None) -> set[str]:
    """Codes recorded without an error: written straight into a record
    (``rec.reason_code = "x"``, ``RunRecord(reason_code="x")``, also in a tuple assignment
    with the status), and the ``Moved`` codes (``IncomingBlob.current``'s, which
    ``ledger.claim_file`` raises as ``Skipped``)."""
    from typing import get_args

    from sales_etl.core.reasons import Moved

    found = set(get_args(Moved))
    for _, tree in _package_trees() if trees is None else trees:
        for node in ast.walk(tree):
            found.update(c for v in _reason_code_assigned(node) for c in _strings(v))
            if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "RunRecord":
                found.update(c for kw in node.keywords if kw.arg == "reason_code" for c in _strings(kw.value))
    return found


def file_kind(code: str, kinds: dict[str, set[str]], skips: set[str]) -> str:
    """The kind of a file code by how the package raises it: a data error (also when a
    config error carries it elsewhere, e.g. ``unknown_dataset`` out of the reader), else a
    transient one (``in_progress`` is raised as ``Skipped``, then failed as transient), else
    a config error, else a skip or a note; "ambiguous" when raised both as data and as
    transient, "nothing" when nothing raises or records it."""
    found = kinds.get(code, set())
    if {"data", "transient"} <= found:
        return "ambiguous"
    for kind in ("data", "transient", "config"):
        if kind in found:
            return kind
    return "skipped" if "skipped" in found or code in skips else "nothing"


def table_problems(tables: dict[str, set[str]], kinds: dict[str, set[str]], skips: set[str]) -> list[str]:
    out = [f"### {h}: a table of file codes of no known kind" for h in tables if h not in FILE_TABLES]
    out.extend(f"### {h}: no such table" for h in FILE_TABLES if h not in tables)
    for heading, listed in tables.items():
        want = FILE_TABLES.get(heading)
        for code in sorted(listed):
            kind = file_kind(code, kinds, skips)
            if want is not None and kind != want:
                out.append(f"{code}: under {heading!r}, but the package raises it as {kind}")
    return out


def test_each_file_code_table_lists_codes_of_its_kind() -> None:
    tables = file_tables()
    assert table_problems(tables, raised_kinds(), recorded_skips()) == []
    assert set().union(*tables.values()) == codes("file")  # (and every file code is in one)


def test_the_kinds_are_read_from_the_code() -> None:
    """(The check cannot pass by finding nothing: the kinds of a few codes, as raised; a
    transient code listed as a data error, a data error as a skip, and a code nothing raises
    fail it.)"""
    kinds, skips = raised_kinds(), recorded_skips()
    expected = {
        "empty_file": "data",
        "unsafe_name": "data",  # UnsafeName(DataError) passes its own code
        "unknown_dataset": "data",  # also a ConfigError out of the reader
        "db_data": "data",
        "db_conflict": "transient",
        "interrupted": "transient",
        "in_progress": "transient",  # a Skipped out of the ledger, failed as transient
        "error": "config",  # EtlError's default code, a ConfigError's without code=
        "gone": "skipped",
        "superseded": "skipped",
        "requeued": "skipped",
        "same_content": "skipped",
    }
    assert {code: file_kind(code, kinds, skips) for code in expected} == expected
    assert kinds["unknown_dataset"] == {"data", "config"} and kinds["in_progress"] == {"skipped", "transient"}
    page = (ROOT / "docs" / "reason-codes.md").read_text()
    planted = (
        page.replace("| `db_unreachable` |", "| `db_unreachablx` |")
        .replace(
            "| `empty_file` | no header line |", "| `empty_file` | no header line |\n| `db_transient` | x |"
        )
        .replace("| `same_content` |", "| `db_data` |")
    )
    assert table_problems(file_tables(planted), kinds, skips) == [
        "db_transient: under 'Data errors', but the package raises it as transient",
        "db_unreachablx: under 'Transient errors', but the package raises it as nothing",
        "db_data: under 'Skipped, or a note on a load', but the package raises it as data",
    ]
    made = [(Path("x.py"), ast.parse('raise DataError("m", code="db_transient")\n'))]
    assert raised_kinds(made) == {"db_transient": {"data"}}
    assert raised_kinds([(Path("x.py"), ast.parse('ConfigError("no code")\nUnsafeName("n")\n'))]) == {
        "error": {"config"},
        "unsafe_name": {"data"},
    }
