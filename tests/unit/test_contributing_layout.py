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
