"""The package's folders are its architecture, and these tests hold its edges.

``sales_etl/`` holds one subpackage per role, in layers from the bottom up: a module imports
only from its own layer and the layers below it (db never from storage, though it sits above
it), read statically: at module level, inside functions, and under ``if TYPE_CHECKING:``
alike. The pure layers (core, stages) load no client library; the flow writes no SQL and
holds no storage SDK; SQL is written in db/ only, the storage SDK is used in storage/ only,
the dev package only by the command line. No module is over 400 lines. Dynamic imports
(``importlib.import_module("sales_etl...")``) count as imports; SQL is found by its keywords
in capitals or by a statement's shape in any case, f-strings included, and so is a cursor
call (``.execute(...)``) outside db/. Each check is also run on a made-up module that breaks
it, so a check that could never fail would fail here.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "sales_etl"
LAYERS = ("core", "stages", "config", "datasets", "storage", "db", "flow", "app", "cli")
PURE = ("core", "stages")
CLIENTS = ("azure", "psycopg2", "sqlalchemy", "opentelemetry", "requests", "urllib3")
SQL = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|COPY|CREATE|ALTER|TRUNCATE|SHOW)\b\s+\S")
# a text that opens as a statement, in any case ("select pg_advisory_xact_lock(1)")
SQL_START = re.compile(
    r"^\s*\(?\s*(select\s+(.*\bfrom\b|\w+\s*\(|\d)|insert\s+into\b|update\s+\S+\s+set\b"
    r"|delete\s+from\b|copy\s+\S+.*\b(from|to)\s+std(in|out)\b|(create|alter|drop)\s+(temporary\s+)?"
    r"(table|index|role|schema|view|function)\b|truncate\s+\S+\s*;?\s*$|lock\s+table\b"
    r"|set\s+(local\s+|session\s+)?\w+\s*(=|to)\s|show\s+\w+\s*;?\s*$|with\s+\w+\s+as\s*\()",
    re.I,
)
# what runs SQL on a psycopg2 cursor or connection: called outside db/, SQL ran there
CURSOR_CALLS = ("execute", "executemany", "copy_expert", "copy_from", "copy_to", "mogrify", "callproc")
# layers that must not import a given lower layer all the same
FORBIDDEN = {"db": ("storage",)}
MAX_LINES = 400


@dataclass(frozen=True)
class Import:
    name: str  # dotted, resolved (relative imports made absolute)
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(source: str, module: str, is_package: bool = False) -> list[Import]:
    """Every import of a module's source, each imported name as its own dotted entry."""
    found: list[Import] = []

    def visit(node: ast.AST, type_only: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for stmt in node.body:
                visit(stmt, True)
            for stmt in node.orelse:
                visit(stmt, type_only)
            return
        if isinstance(node, ast.Import):
            found.extend(Import(a.name, node.lineno, type_only) for a in node.names)
        elif (
            isinstance(node, ast.Call)
            and ast.unparse(node.func) in ("importlib.import_module", "import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append(Import(node.args[0].value, node.lineno, type_only))
        elif isinstance(node, ast.ImportFrom):
            prefix = node.module or ""
            if node.level:
                parts = module.split(".") if is_package else module.split(".")[:-1]
                parts = parts[: len(parts) - (node.level - 1)]
                prefix = ".".join([*parts, *([node.module] if node.module else [])])
            found.extend(Import(f"{prefix}.{a.name}", node.lineno, type_only) for a in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child, type_only)

    visit(ast.parse(source), False)
    return found


def layer(dotted: str) -> int | None:
    """The layer of a sales_etl module or name; None for the package root itself."""
    parts = dotted.split(".")
    if parts[0] != "sales_etl" or len(parts) < 2 or parts[1] not in LAYERS:
        return None
    return LAYERS.index(parts[1])


def upward(source: str, module: str) -> list[str]:
    """The imports of ``module`` that reach a layer above its own."""
    own = layer(module)
    assert own is not None, module
    banned = FORBIDDEN.get(LAYERS[own], ())
    return [
        f"line {i.line}: {i.name} ({LAYERS[target]} is above {LAYERS[own]})"
        if target > own
        else f"line {i.line}: {i.name} ({LAYERS[own]} may not import {LAYERS[target]})"
        for i in imports(source, module)
        if (target := layer(i.name)) is not None and (target > own or LAYERS[target] in banned)
    ]


def _added_text(node: ast.AST) -> str | None:
    """The text of a sum of string constants ("a " + "b"), else None."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _added_text(node.left), _added_text(node.right)
        if left is not None and right is not None:
            return left + right
    return None


def sql_texts(source: str) -> list[str]:
    """String constants that read as SQL statements (docstrings excepted), and the calls that
    run SQL on a cursor."""
    tree = ast.parse(source)
    docstrings = {
        ast.get_docstring(n, clean=False)
        for n in ast.walk(tree)
        if isinstance(n, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    in_fstrings = {id(v) for n in ast.walk(tree) if isinstance(n, ast.JoinedStr) for v in n.values}
    texts = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in in_fstrings
    ]
    # "a " + "b": the text the sum makes
    texts += [s for n in ast.walk(tree) if isinstance(n, ast.BinOp) and (s := _added_text(n)) is not None]
    # an f-string as the text it makes, each {field} standing for a name
    texts += [
        "".join(str(v.value) if isinstance(v, ast.Constant) else "x" for v in n.values)
        for n in ast.walk(tree)
        if isinstance(n, ast.JoinedStr)
    ]
    found = [t for t in texts if t not in docstrings and (SQL.search(t) or SQL_START.search(t))]
    found += [
        f"line {n.lineno}: .{n.func.attr}(...)"
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in CURSOR_CALLS
    ]
    return found


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out[".".join(parts)] = path
    return out


MODULES = _modules()
LAYERED = {m: p for m, p in MODULES.items() if layer(m) is not None}


def _in(*layers: str) -> dict[str, Path]:
    return {m: p for m, p in LAYERED.items() if m.split(".")[1] in layers}


def test_the_top_level_is_the_layers() -> None:
    entries = {p.name for p in PACKAGE.iterdir() if p.name != "__pycache__"}
    assert entries == {"__init__.py", "__main__.py", "py.typed", "certs", *LAYERS}, (
        "sales_etl/ holds the layer subpackages only (a new module goes into the folder of its role)"
    )
    for name in LAYERS:
        assert (PACKAGE / name / "__init__.py").is_file(), f"sales_etl/{name}/ is not a package"


@pytest.mark.parametrize("name", LAYERS)
def test_each_subpackage_says_what_it_may_import_and_holds_nothing_else(name: str) -> None:
    tree = ast.parse((PACKAGE / name / "__init__.py").read_text())
    doc = ast.get_docstring(tree)
    assert doc and "import" in doc, f"sales_etl/{name}/__init__.py: a docstring saying what it may import"
    assert len(tree.body) == 1, f"sales_etl/{name}/__init__.py holds code (no re-exports: import the module)"


@pytest.mark.parametrize("module", sorted(LAYERED))
def test_no_import_runs_up_a_layer(module: str) -> None:
    assert upward(LAYERED[module].read_text(), module) == []


@pytest.mark.parametrize("module", sorted(_in(*PURE)))
def test_pure_layers_import_no_client_library(module: str) -> None:
    found = [i for i in imports(LAYERED[module].read_text(), module) if i.name.split(".")[0] in CLIENTS]
    assert found == [], f"{module} imports a client library: {found}"


@pytest.mark.parametrize(
    "module", [*sorted(_in(*PURE)), "sales_etl.flow.retrypolicy", "sales_etl.config.hostsettings"]
)
def test_pure_modules_load_no_client_library_even_indirectly(module: str) -> None:
    code = f"import sys, {module}; print(sorted({{m.split('.')[0] for m in sys.modules}} & {set(CLIENTS)!r}))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"{module} loads {out.stdout.strip()}"


@pytest.mark.parametrize("module", sorted(_in("flow")))
def test_the_flow_holds_no_sql_and_no_storage_sdk(module: str) -> None:
    source = LAYERED[module].read_text()
    run_time = [i.name for i in imports(source, module) if not i.type_only]
    assert not [
        n for n in run_time if n.startswith(("azure.storage", "azure.core", "psycopg2", "sqlalchemy"))
    ]
    assert sql_texts(source) == []


def test_sql_is_written_in_db_only() -> None:
    found = {m: sql_texts(p.read_text()) for m, p in MODULES.items() if not m.startswith("sales_etl.db")}
    assert {m: t for m, t in found.items() if t} == {}


def test_drivers_sdk_and_dev_package_stay_at_their_edges() -> None:
    allowed = {  # imported at run time only in these layers
        ("psycopg2", "sqlalchemy"): {"db"},
        ("azure.storage", "azure.core"): {"storage"},
        ("sales_etl_dev",): {"cli"},
    }
    wrong = []
    for module, path in LAYERED.items():
        for i in imports(path.read_text(), module):
            for prefixes, layers in allowed.items():
                if not i.type_only and i.name.startswith(prefixes) and module.split(".")[1] not in layers:
                    wrong.append(f"{module} line {i.line}: {i.name}")
    assert wrong == []


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_is_over_400_lines(module: str) -> None:
    lines = len(MODULES[module].read_text().splitlines())
    assert lines <= MAX_LINES, f"{module}: {lines} lines (split it along a seam of its own)"


def test_the_checks_fail_on_a_module_that_breaks_them() -> None:
    """Made-up modules: an upward import (at module level, in a function, type-only, and
    relative), a client library in a pure stage, SQL in the flow."""
    assert upward("from sales_etl.flow import pipeline\n", "sales_etl.stages.x")
    assert upward("def f():\n    from sales_etl.db.connection import connect\n", "sales_etl.storage.x")
    assert upward(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sales_etl.cli import doctor\n",
        "sales_etl.app.triggers",
    )
    assert upward("from ..db import ledger\n", "sales_etl.stages.x")
    assert upward(
        "import importlib\nm = importlib.import_module('sales_etl.db.ledger')\n", "sales_etl.stages.x"
    )
    assert upward("def f():\n    from sales_etl.storage import moves\n", "sales_etl.db.lookup")  # barred
    assert not upward("from sales_etl.core.errors import DataError\nimport sales_etl\n", "sales_etl.stages.x")
    assert [i.name for i in imports("import psycopg2.errors\n", "sales_etl.stages.x")] == ["psycopg2.errors"]
    assert sql_texts('"""SELECT in a docstring is prose."""\nq = "SELECT 1 FROM t"\n') == ["SELECT 1 FROM t"]
    assert sql_texts('q = "select run_id from etl_runs where x"\n')
    assert sql_texts('q = f"SELECT {cols} FROM etl_runs"\n') == ["SELECT x FROM etl_runs"]
    assert sql_texts('cur.execute("select pg_advisory_xact_lock(hashtext(%s))", (name,))\n')
    assert sql_texts('q = "lock table etl_runs in share mode"\n')
    assert sql_texts('q = "set local statement_timeout = 5000"\n')
    assert sql_texts('q = "select status " + "from etl_runs"\n')
    assert sql_texts("cur.execute(query)\n") == ["line 1: .execute(...)"]
    for prose in (
        "copy the blob, then delete the source; select a dataset",
        "Upload under incoming/<dataset>/ (select one from `sales-etl datasets`)",
        "(retried on conflict)",
        "to update them, set BLIND_INDEX_KEY_NEW and run rotate-keys",
        "we truncate each to 200 characters",
        "show the ledger",
    ):
        assert not sql_texts(f"m = {prose!r}\n"), prose
    assert layer("sales_etl") is None and layer("sales_etl.cli.doctor") == LAYERS.index("cli")
