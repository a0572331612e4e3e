"""The README's Layout section names every module of the package and of the dev package."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _layout() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("\n## Layout\n")
    return text[start : text.index("\n## ", start + 1)]


def _modules(package: Path) -> set[str]:
    found = {p.stem for p in package.glob("*.py") if p.stem not in {"__init__", "__main__"}}
    found |= {f"{p.name}/" for p in package.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    return found


def test_layout_names_every_module() -> None:
    named = set(re.findall(r"`([\w/]+)`", _layout()))
    for package in (ROOT / "sales_etl", ROOT / "dev" / "sales_etl_dev"):
        missing = _modules(package) - named
        assert not missing, f"README Layout does not name {sorted(missing)} ({package.name})"


def test_layout_names_no_module_that_is_gone() -> None:
    table = [line for line in _layout().splitlines() if line.startswith("| ") and "---" not in line]
    named = {m for line in table[1:] for m in re.findall(r"`([a-z_]+/?)`", line.split("|")[2])}
    existing = _modules(ROOT / "sales_etl") | _modules(ROOT / "dev" / "sales_etl_dev")
    existing |= {"sales_etl_dev"}
    assert named - existing == set(), sorted(named - existing)


def test_layout_places_each_module_in_its_package() -> None:
    """The dev/ row names only the development package's modules, the other rows only the
    deployed package's (the dev tools once were listed as if they shipped)."""
    rows = [
        line.split("|")[1:3] for line in _layout().splitlines() if line.startswith("| ") and "---" not in line
    ][1:]
    runtime, dev = _modules(ROOT / "sales_etl"), _modules(ROOT / "dev" / "sales_etl_dev")
    for group, cell in rows:
        named = set(re.findall(r"`([a-z_]+/?)`", cell))
        if group.strip().startswith("dev/"):
            assert named - {"sales_etl_dev"} <= dev, named - dev
            assert dev <= named, dev - named
        else:
            assert named <= runtime, (group, named - runtime)
