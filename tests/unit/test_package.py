"""The deployment package: what `func azure functionapp publish` uploads (tools/package.py
reimplements Core Tools' rules) holds the app and nothing secret, generated or dev-only."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from tools.imports import function_path, package_modules
from tools.package import ROOT, build, matcher, published

# The operator's command line ships with the app (the `sales-etl` wheel is the same package)
# although no function imports it. The development tools do not: they live in dev/
# (`sales_etl_dev`), which neither the zip, the image nor the wheel holds. A module added to
# the package outside the function path and outside this set fails the test.
OPERATOR_MODULES = {
    "sales_etl.__main__",
    "sales_etl.storage.blobpath",
    "sales_etl.cli",
    "sales_etl.cli.commands",
    "sales_etl.cli.files",
    "sales_etl.cli.runs",
    "sales_etl.cli.admin",
    "sales_etl.cli.context",
    "sales_etl.db.dbcheck",
    "sales_etl.cli.doctor",
    "sales_etl.cli.hints",
    "sales_etl.db.lookup",
    "sales_etl.flow.manual",
    "sales_etl.db.migrate",
    "sales_etl.db.probes",
    "sales_etl.storage.preflight",
    "sales_etl.flow.requeue",
    "sales_etl.db.rotate",
}
SECRET_CONTENT = [
    re.compile(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(rb"AccountKey=[A-Za-z0-9+/]{20,}"),
    re.compile(rb"SharedAccessSignature=|[?&]sig=[A-Za-z0-9%]{20,}"),
    re.compile(rb"InstrumentationKey=[0-9a-f]{8}-"),
]


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    out = tmp_path_factory.mktemp("pkg") / "functionapp.zip"
    build(out)
    with zipfile.ZipFile(out) as zf:
        return {name: zf.read(name) for name in zf.namelist()}


def test_the_package_holds_the_app_and_the_tls_roots(package: dict[str, bytes]) -> None:
    names = set(package)
    for required in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "sales_etl/__init__.py",
        "sales_etl/app/triggers.py",
        "sales_etl/config/settings.py",
        "sales_etl/datasets/sales.toml",
        "sales_etl/certs/azure-postgres-roots.pem",
    ):
        assert required in names, required
    assert {PurePosixPath(n).parts[0] for n in names} == {
        "function_app.py",
        "host.json",
        "requirements.txt",
        "sales_etl",
        "migrations",
    }
    shipped = _modules(names)
    assert shipped == package_modules()  # every module of every subpackage, the CLI too
    assert function_path().modules <= shipped  # everything the functions import ships


def test_nothing_secret_generated_or_dev_only_ships(package: dict[str, bytes]) -> None:
    for name, content in package.items():
        parts = PurePosixPath(name).parts
        assert not any(
            p.startswith(
                (".env", ".devstack", ".venv", "__pycache__", "node_modules", "tests", "bench", ".git")
            )
            for p in parts
        ), name
        assert not name.endswith((".pyc", ".key", ".crt", "local.settings.json", ".example")), name
        assert not any(p.endswith(".egg-info") for p in parts), name
        assert parts[0] not in {
            "build",
            "dist",
            "docs",
            "data",
            "certs",
            "tools",
            "Makefile",
            "pyproject.toml",
            "requirements-dev.txt",
            "requirements-cli.txt",
            "package.json",
            "package-lock.json",
            "Dockerfile",
            "docker-compose.yml",
            "README.md",
            ".funcignore",
            ".gitignore",
        }, name
        for pattern in SECRET_CONTENT:
            assert not pattern.search(content), (name, pattern.pattern)


def _modules(names: set[str]) -> set[str]:
    """Dotted module names of the package's .py files among ``names``."""
    out = set()
    for name in names:
        path = PurePosixPath(name)
        if path.parts[0] == "sales_etl" and path.suffix == ".py":
            parts = path.with_suffix("").parts
            out.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return out


def test_modules_off_the_function_path_are_only_the_operators_command_line(package: dict[str, bytes]) -> None:
    off_path = _modules(set(package)) - function_path().modules
    assert off_path <= OPERATOR_MODULES, sorted(off_path - OPERATOR_MODULES)
    assert not any("sales_etl_dev" in name or name.startswith("dev/") for name in package)


def _touch(root: Path, rel: str, content: str = "x") -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)


def test_publishing_a_worktree_full_of_generated_files_uploads_none_of_them(tmp_path: Path) -> None:
    """`func azure functionapp publish` zips the working folder, not the commit: everything the
    dev tools generate must be denied by .funcignore (or by Core Tools itself)."""
    shutil.copy(ROOT / ".funcignore", tmp_path / ".funcignore")
    wanted = [
        "function_app.py",
        "host.json",
        "requirements.txt",
        "sales_etl/__init__.py",
        "sales_etl/certs/azure-postgres-roots.pem",
        "sales_etl/datasets/sales.toml",
        "migrations/V1__x.sql",
        # a local build for `publish --no-build` must ship
        ".python_packages/lib/site-packages/numpy/__init__.py",
    ]
    generated = [
        ".env",
        "sales_etl/.env",
        ".devstack/pg/postgresql.conf",
        ".devstack/certs/server.key",
        "certs/generated/server.key",
        "certs/generated/ca.crt",
        "certs/README.md",
        "local.settings.json",
        "sales_etl/local.settings.json",
        "local.settings.json.example",
        "sales_etl.egg-info/PKG-INFO",
        "sales_etl/sales_etl.egg-info/PKG-INFO",
        "build/lib/sales_etl/x.py",
        "dist/functionapp.zip",
        "__pycache__/function_app.cpython-311.pyc",
        "sales_etl/__pycache__/x.cpython-311.pyc",
        "sales_etl/datasets/__pycache__/x.pyc",
        ".venv/bin/python",
        ".mypy_cache/x.json",
        ".ruff_cache/x",
        ".pytest_cache/v/x",
        ".hypothesis/examples/x",
        "node_modules/azurite/x.js",
        "data/mine.csv",
        "bench/work/x.csv",
        "tests/unit/test_x.py",
        ".git/config",
        "sales_etl/.vscode/settings.json",
        "server.key",
        "sales_etl/x.key",
        "docs/operations.md",
        "tools/package.py",
        "Makefile",
        "pyproject.toml",
        "requirements-dev.txt",
        "requirements-cli.txt",
        "package.json",
        "Dockerfile",
        "docker-compose.yml",
        # the development package, and its generated RPC stubs
        "dev/pyproject.toml",
        "dev/sales_etl_dev/devstack.py",
        "dev/sales_etl_dev/hostcall.py",
        "dev/sales_etl_dev/rpc/_generated/function_rpc_pb2.py",
        "sales_etl_dev/devstack.py",
        # whatever else lands in the folder: nothing ships unless the allow-list names it
        "secrets.txt",
        ".env.production",
        "notes/todo.md",
        "sales_etl/.env.local",
        "sales_etl/datasets/__pycache__/sales.cpython-311.pyc",
        "migrations/.env",
        "migrations/README.md",
        # a client key or a private CA dropped beside the shipped roots (PEM files there are
        # git-ignored, so `make package` never sees them, but publish zips the folder)
        "sales_etl/certs/client-key.pem",
        "sales_etl/certs/dev-ca.pem",
    ]
    for rel in wanted + generated:
        _touch(tmp_path, rel)
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert published(files, tmp_path) == sorted(wanted)
    # The limit of Core Tools' matcher: a pattern matches a prefix and `$` cannot be written,
    # so a name that *begins* with an allowed one ships too. Keep such names out of the folder.
    _touch(tmp_path, "host.json.bak")
    assert "host.json.bak" in published([*files, "host.json.bak"], tmp_path)


def test_the_matcher_follows_core_tools_rules_not_gits() -> None:
    accepts = matcher("# comment\n__pycache__/\n/build\n*.log\ndocs/**/*.md\n!docs/keep.md\n")
    assert not accepts("__pycache__/a.pyc")
    assert accepts("pkg/__pycache__/a.pyc")  # anchored at the root: no implicit **/
    assert not accepts("build/x") and not accepts("builder.py")  # a prefix, not a name
    assert not accepts("app.log") and accepts("logs/app.log")  # * is one path segment
    assert not accepts("docs/a/b.md") and accepts("docs/keep.md")  # ! re-includes
    assert not accepts("x/.git/config") and not accepts("a/local.settings.json")  # always skipped
    assert accepts("function_app.py")
