"""docs/contributing.md's Layout names every module of the package and of the development
package by its path, every subpackage of the package in its layers, and no path that is
gone. The trees are walked as they are (``sales_etl/**/*.py``), so a module added, moved or
removed anywhere fails this test until the page says so."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "contributing.md"
PACKAGES = (ROOT / "sales_etl", ROOT / "dev" / "sales_etl_dev")
_PATH = re.compile(r"`((?:sales_etl|dev/sales_etl_dev)(?:/[\w.*-]+)*/?)`")


def _layout() -> str:
    text = PAGE.read_text()
    start = text.index("\n## Layout\n")
    return text[start : text.index("\n## ", start + 1)]


def _tracked(path: Path, package: Path) -> bool:
    """Not a cache or a generated folder (``__pycache__``, the git-ignored ``rpc/_generated``)."""
    return not any(part.startswith("_") for part in path.relative_to(package).parts[:-1])


def modules(package: Path, root: Path = ROOT) -> set[str]:
    """Every module (not ``__init__``/``__main__``) and every subpackage of ``package``, at
    any depth, as a path from the repository's root (a subpackage with a trailing ``/``)."""
    found = {
        p.relative_to(root).as_posix()
        for p in package.rglob("*.py")
        if p.stem not in ("__init__", "__main__") and _tracked(p, package)
    }
    found |= {
        f"{p.parent.relative_to(root).as_posix()}/"
        for p in package.rglob("__init__.py")
        if p.parent != package and _tracked(p, package)
    }
    return found


def named() -> set[str]:
    return set(_PATH.findall(_layout()))


def test_the_layout_names_every_module_by_its_path() -> None:
    for package in PACKAGES:
        missing = modules(package) - named()
        assert not missing, f"docs/contributing.md (Layout) does not name {sorted(missing)}"


def test_the_layout_names_no_path_that_is_gone() -> None:
    gone = sorted(path for path in named() if not any(ROOT.glob(path.rstrip("/"))))
    assert gone == [], f"docs/contributing.md (Layout) names what is not in the tree: {gone}"


def test_the_layers_are_the_subpackages() -> None:
    """The layer line (``core < stages < ...``) lists exactly the package's subpackages."""
    [line] = [line for line in _layout().splitlines() if " < " in line]
    layers = [name.strip() for name in line.split("<")]
    subpackages = {p.parent.name for p in (ROOT / "sales_etl").glob("*/__init__.py")}
    assert sorted(layers) == sorted(subpackages), (layers, sorted(subpackages))


def test_the_walk_sees_nested_modules(tmp_path: Path) -> None:
    """(The walk cannot pass by finding nothing: it reaches modules in subpackages at any
    depth and skips caches and generated folders.)"""
    for name in (
        "pkg/__init__.py",
        "pkg/__main__.py",
        "pkg/top.py",
        "pkg/flow/__init__.py",
        "pkg/flow/pipeline.py",
        "pkg/flow/deep/__init__.py",
        "pkg/flow/deep/inner.py",
        "pkg/__pycache__/top.cpython-313.py",
        "pkg/rpc/_generated/__init__.py",
        "pkg/rpc/_generated/made_pb2.py",
        "pkg/rpc/__init__.py",
    ):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    assert modules(tmp_path / "pkg", tmp_path) == {
        "pkg/top.py",
        "pkg/flow/",
        "pkg/flow/pipeline.py",
        "pkg/flow/deep/",
        "pkg/flow/deep/inner.py",
        "pkg/rpc/",
    }


# ------------------------------------------------- every path the docs name, and where it lives

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# a path from the repository's root: sales_etl/..., dev/..., tests/... (not /dev/null, not
# part of a longer path or word); it ends where a placeholder (<name>) or punctuation begins
_NAMED_PATH = re.compile(r"(?<![\w./-])((?:sales_etl|dev|tests)/[\w./*-]*)")
_SHORT_PATH = re.compile(r"`([a-z_]+)/([\w./*-]*)`")  # `db/ledger.py`: in the package


def named_paths(text: str) -> set[str]:
    """The repository paths a page names anywhere (prose, tables, code blocks), with a
    sentence's full stop taken off; ``storage/blobs.py`` in backticks, where ``storage`` is
    a subpackage, as ``sales_etl/storage/blobs.py``."""
    found = {
        m.group(1).rstrip(".")
        for m in _NAMED_PATH.finditer(text)
        # `tests/unit/test_<module>.py`: a placeholder in a name (in `datasets/<name>.toml`
        # the folder before it is still named)
        if m.group(1).endswith("/") or not text.startswith("<", m.end())
    }
    subpackages = {p.parent.name for p in (ROOT / "sales_etl").glob("*/__init__.py")}
    found |= {f"sales_etl/{head}/{rest}" for head, rest in _SHORT_PATH.findall(text) if head in subpackages}
    return found


def _exists(path: str, root: Path = ROOT) -> bool:
    return any(root.glob(path.rstrip("/"))) if "*" in path else (root / path).exists()


def test_every_path_the_docs_name_exists() -> None:
    gone = sorted(
        f"{page.relative_to(ROOT)}: {path}"
        for page in DOCS
        for path in named_paths(page.read_text())
        if not _exists(path)
    )
    assert gone == [], f"the docs name what is not in the tree: {gone}"


def test_the_path_scan_finds_paths() -> None:
    """(The scan cannot pass by finding nothing.)"""
    text = (
        "see `sales_etl/flow/pipeline.py`, tests/unit/test_x.py. and dev/sales_etl_dev/rpc/ "
        "(not /dev/null, nor my-dev/x), `db/ledger.py`, `incoming/sales/` and "
        "`sales_etl/datasets/*.toml`; migrations/V<n>__x.sql, `sales_etl/datasets/<name>.toml`"
    )
    assert named_paths(text) == {
        "sales_etl/flow/pipeline.py",
        "tests/unit/test_x.py",
        "dev/sales_etl_dev/rpc/",
        "sales_etl/db/ledger.py",
        "sales_etl/datasets/*.toml",
        "sales_etl/datasets/",
    }
    assert _exists("sales_etl/datasets/*.toml") and not _exists("sales_etl/flow/nothing.py")
    contributing = named_paths(PAGE.read_text())
    assert {
        "sales_etl/stages/rules.py",
        "tests/unit/test_architecture.py",
        "dev/sales_etl_dev/cli.py",
    } <= contributing


def layout_rows(text: str) -> list[tuple[str, list[str]]]:
    """Each row of the Layout's tables whose first cell names a subpackage (``sales_etl/db/``):
    (that subpackage, the paths the rest of the row names)."""
    rows = []
    for line in text.splitlines():
        if not line.startswith("| `"):
            continue
        first, *rest = line.split("|")[1:]
        [head, *_] = _PATH.findall(first) or [""]
        if head.endswith("/"):  # (a bare `sales_etl`, "nothing else of it", is no module)
            rows.append((head, [p for p in _PATH.findall("|".join(rest)) if "/" in p]))
    return rows


def misplaced(text: str) -> list[str]:
    return [
        f"{path}: in the row of {package}"
        for package, paths in layout_rows(text)
        for path in paths
        if not path.startswith(package)
    ]


def test_each_module_is_named_in_its_subpackages_row() -> None:
    rows = layout_rows(_layout())
    assert len(rows) >= 9 and all(paths for package, paths in rows if package.startswith("sales_etl/"))
    assert misplaced(_layout()) == []


def test_a_module_in_another_row_fails() -> None:
    layout = _layout()
    [db_row] = [line for line in layout.splitlines() if line.startswith("| `sales_etl/db/`")]
    planted = layout.replace(db_row, db_row.rstrip(" |") + ", `sales_etl/flow/pipeline.py` |")
    assert misplaced(planted) == ["sales_etl/flow/pipeline.py: in the row of sales_etl/db/"]


# a module (or a name in one) written dotted: sales_etl.flow.pipeline.process_blob; metric and
# log field names (sales_etl.rows, sales_etl.run_uuid) are not under a subpackage
_DOTTED = re.compile(r"\b(sales_etl(?:_dev)?(?:\.[A-Za-z_]\w*)+)")


def dotted_refs(text: str) -> set[str]:
    subpackages = {p.parent.name for p in (ROOT / "sales_etl").glob("*/__init__.py")}
    return {
        ref
        for ref in _DOTTED.findall(text)
        if ref.startswith("sales_etl_dev.") or ref.split(".")[1] in subpackages
    }


def resolves(ref: str) -> bool:
    """Whether the longest importable prefix of ``ref`` has the rest as attributes."""
    import importlib

    parts = ref.split(".")
    for n in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:n]))
        except ImportError:
            continue
        for name in parts[n:]:
            if not hasattr(obj, name):
                return False
            obj = getattr(obj, name)
        return True
    return False


def test_every_dotted_module_the_docs_name_exists() -> None:
    gone = sorted(
        f"{page.relative_to(ROOT)}: {ref}"
        for page in DOCS
        for ref in dotted_refs(page.read_text())
        if not resolves(ref)
    )
    assert gone == [], f"the docs name modules or names that are not there: {gone}"


def test_the_dotted_scan_finds_and_refuses() -> None:
    text = "`sales_etl.flow.attempts`, sales_etl.flow.pipeline.process_blob, sales_etl.rows, "
    text += "tests/unit/test_<x>.py"
    assert dotted_refs(text) == {"sales_etl.flow.attempts", "sales_etl.flow.pipeline.process_blob"}
    assert resolves("sales_etl.flow.pipeline.process_blob") and not resolves("sales_etl.flow.attempts")
    assert not resolves("sales_etl.flow.pipeline.no_such_name")
    assert named_paths(text) == set()
