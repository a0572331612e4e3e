"""requirements.txt (what Azure's remote build installs) holds exactly what the function app
imports: nothing only the command line or the generator needs (pandas, click, tqdm, sqlalchemy
are in requirements-cli.txt), and nothing the app imports is missing."""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
from functools import lru_cache
from pathlib import Path

from tools.imports import function_path
from tools.package import ROOT

# Imports the static walk finds that do not run when the host invokes a function, with why.
OFF_PATH_IMPORTS = {("sales_etl.stages.transform", "pandas"): "Chunk.frame(), for tests and inspection"}
# Required by the platform, imported by no app module (the worker on Python 3.13).
PLATFORM_ONLY = {"azure-functions-runtime"}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirements(path: Path) -> set[str]:
    names = set()
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            names.add(_canonical(re.split(r"[<>=!~;\[ ]", line, maxsplit=1)[0]))
    return names


@lru_cache(maxsize=1)
def _owners() -> dict[str, str]:
    """Installed file (absolute, resolved) -> distribution name."""
    owners = {}
    for dist in md.distributions():
        for f in dist.files or ():
            owners[str(Path(str(dist.locate_file(f))).resolve())] = _canonical(dist.metadata["Name"])
    return owners


def _distribution(name: str) -> str | None:
    """The distribution that provides ``name`` (None for a bare namespace package)."""
    parts = name.split(".")
    while parts:
        try:
            spec = importlib.util.find_spec(".".join(parts))
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.origin not in (None, "namespace"):
            return _owners()[str(Path(spec.origin).resolve())]
        parts.pop()
    if importlib.util.find_spec(name.split(".")[0]) is not None:
        return None  # e.g. `opentelemetry`, `azure`: a namespace; its submodules are resolved
    raise AssertionError(f"{name}: not installed")


def _closure(names: set[str]) -> set[str]:
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        for req in requires:
            if "extra ==" not in req:
                todo.append(_canonical(re.split(r"[<>=!~;\[ (]", req, maxsplit=1)[0]))
    return seen


def _imported() -> dict[str, set[str]]:
    """Distribution -> the imported names it provides, on the function path."""
    out: dict[str, set[str]] = {}
    for name, importers in function_path().third_party.items():
        importers = {m for m in importers if (m, name.split(".")[0]) not in OFF_PATH_IMPORTS}
        dist = _distribution(name) if importers else None
        if dist is not None:
            out.setdefault(dist, set()).add(name)
    return out


def test_every_deployed_requirement_is_imported_by_the_function_app() -> None:
    deployed = _requirements(ROOT / "requirements.txt")
    unused = deployed - set(_imported()) - PLATFORM_ONLY
    assert not unused, f"in requirements.txt but not imported on the function path: {sorted(unused)}"


def test_everything_the_function_app_imports_is_deployed() -> None:
    deployed = _requirements(ROOT / "requirements.txt")
    installed = _closure(deployed)
    missing = {d: sorted(n) for d, n in _imported().items() if d not in installed}
    assert not missing, f"imported on the function path, not installed by requirements.txt: {missing}"


def test_cli_only_packages_live_in_requirements_cli() -> None:
    cli = _requirements(ROOT / "requirements-cli.txt")
    assert {"pandas", "click", "tqdm", "sqlalchemy"} <= cli
    assert not cli & _requirements(ROOT / "requirements.txt")
    dev = (ROOT / "requirements-dev.txt").read_text().splitlines()
    assert "-r requirements.txt" in dev and "-r requirements-cli.txt" in dev
