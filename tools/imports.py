"""What the function app imports, read statically from the source (no import is executed).

``function_path()`` follows every import (module level and inside functions, not under
``if TYPE_CHECKING:``) from ``function_app.py`` through the ``sales_etl`` package, and returns
the package modules reached and the third-party modules they import.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "sales_etl"


@dataclass
class FunctionPath:
    modules: set[str] = field(default_factory=set)  # sales_etl modules, dotted
    third_party: dict[str, set[str]] = field(default_factory=dict)  # imported name -> importers


def _source(module: str, root: Path) -> Path | None:
    base = root.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, module: str, is_package: bool) -> list[str]:
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for stmt in node.orelse:
                visit(stmt)
            return
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split(".")
                base = parts if is_package else parts[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            found.append(prefix)
            found.extend(f"{prefix}.{alias.name}" for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def function_path(root: Path = ROOT, entry: str = "function_app.py") -> FunctionPath:
    result = FunctionPath()
    queue: list[tuple[str, Path, bool]] = [("function_app", root / entry, False)]
    seen: set[str] = set()
    while queue:
        module, path, is_package = queue.pop()
        if module in seen:
            continue
        seen.add(module)
        if module.startswith(PACKAGE):
            result.modules.add(module)
        for name in _imports(ast.parse(path.read_text(), str(path)), module, is_package):
            top = name.split(".")[0]
            if top == PACKAGE:
                # importing a.b.c runs the __init__ of a and of a.b first
                parts = name.split(".")
                for n in range(1, len(parts) + 1):
                    dotted = ".".join(parts[:n])
                    source = _source(dotted, root)
                    if source is not None:
                        queue.append((dotted, source, source.name == "__init__.py"))
            elif top and top not in sys.stdlib_module_names and top != "__future__":
                result.third_party.setdefault(name, set()).add(module)
    return result


def package_modules(root: Path = ROOT) -> set[str]:
    """Every module of the package, dotted."""
    out = set()
    for path in (root / PACKAGE).rglob("*.py"):
        rel = path.relative_to(root).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        out.add(".".join(parts))
    return out
