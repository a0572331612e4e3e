"""The development tools live in their own package (dev/, ``sales_etl_dev``): nothing that is
deployed holds or imports it at load time, and where it is installed `sales-etl` still has
its `dev`, `demo` and `generate` commands."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEV_MODULES = {"cli", "demo", "devstack", "funcsettings", "generate", "hostcall", "pgbouncer", "rpc"}


def _wheel(src: Path, out: Path) -> None:
    """Build the sales-etl wheel of the checkout at ``src`` into ``out`` (offline)."""
    pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--disable-pip-version-check", "-w", str(out), str(src)], check=True, capture_output=True
    )


def test_the_dev_modules_left_the_runtime_package() -> None:
    runtime = {p.stem for p in (ROOT / "sales_etl").glob("*.py")} | {
        p.name for p in (ROOT / "sales_etl").iterdir() if p.is_dir()
    }
    assert not (DEV_MODULES - {"cli"}) & runtime
    dev = {p.stem for p in (ROOT / "dev" / "sales_etl_dev").glob("*.py")} | {"rpc"}
    assert dev >= DEV_MODULES


def _module_level_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in tree.body:  # module level only: a lazy import inside a function is allowed
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_no_runtime_module_imports_the_dev_package_at_load_time() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(
            n for n in _module_level_imports(p) if n.split(".")[0] == "sales_etl_dev"
        )
        for p in (ROOT / "sales_etl").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_importing_the_command_line_loads_no_dev_module() -> None:
    code = (
        "import sys, sales_etl.cli.commands, function_app; "
        "print(sorted(m for m in sys.modules if m.startswith('sales_etl_dev')))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_dockerfile_copies_no_dev_tooling() -> None:
    copies = [
        line.split()[1:-1]
        for line in (ROOT / "Dockerfile").read_text().splitlines()
        if line.startswith("COPY ")
    ]
    sources = {s for srcs in copies for s in srcs}
    assert "sales_etl" in sources
    assert not any(s.startswith(("dev", "sales_etl_dev", "tests", "bench", "tools")) for s in sources)


def test_the_wheel_holds_the_runtime_package_only(tmp_path: Path) -> None:
    pytest.importorskip("setuptools")
    # built from a clean copy: setuptools reuses a build/ folder, stale modules and all
    src = tmp_path / "src"
    shutil.copytree(
        ROOT,
        src,
        ignore=shutil.ignore_patterns(
            ".git",
            ".venv",
            "node_modules",
            ".devstack",
            "build",
            "dist",
            "*.egg-info",
            "__pycache__",
            ".mypy_cache",
            ".hypothesis",
            ".pytest_cache",
            ".ruff_cache",
            "data",
        ),
    )
    _wheel(src, tmp_path)
    (wheel,) = tmp_path.glob("sales_etl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert "sales_etl/app/triggers.py" in names and "sales_etl/datasets/sales.toml" in names
    assert not [n for n in names if n.startswith(("sales_etl_dev", "dev/", "tests/", "bench/"))]
    assert not [n for n in names if Path(n).stem in DEV_MODULES - {"cli"}]


def _cli(*args: str, hide_dev: bool = False) -> subprocess.CompletedProcess[str]:
    hide = "sys.modules['sales_etl_dev'] = None; " if hide_dev else ""
    code = (
        f"import sys; {hide}sys.argv = ['sales-etl', *sys.argv[1:]]; "
        "from sales_etl.cli.commands import main; main()"
    )
    return subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True)


def test_installed_dev_package_adds_its_commands() -> None:
    listed = _cli("--help")
    assert listed.returncode == 0, listed.stderr
    for name in ("dev", "demo", "generate"):
        assert f"\n  {name} " in listed.stdout, name
    assert _cli("generate", "--help").returncode == 0
    assert "up" in _cli("dev", "--help").stdout


def test_without_the_dev_package_its_commands_say_how_to_get_them() -> None:
    listed = _cli("--help", hide_dev=True)
    assert listed.returncode == 0, listed.stderr
    assert "\n  demo " not in listed.stdout and "\n  runs " in listed.stdout
    for name in ("dev", "demo", "generate"):
        out = _cli(name, hide_dev=True)
        assert out.returncode == 2
        assert "development package is not installed" in out.stderr and "make setup" in out.stderr
        # dev/ alone over an installed wheel finds no checkout (node_modules, .devstack/)
        assert "pip install -e . -e ./dev" in out.stderr and "-e dev/`" not in out.stderr
        assert "Traceback" not in out.stderr
    assert "No such command" in _cli("nosuch", hide_dev=True).stderr


def _bare_env(**extra: str) -> dict[str, str]:
    import os
    import re

    settings = re.compile(r"^(POSTGRES_|SalesStorage|AzureWebJobs|AZ_|FERNET_|BLIND_INDEX_)")
    return {**{k: v for k, v in os.environ.items() if not settings.match(k)}, **extra}


def test_without_the_dev_package_no_hint_names_a_dev_command(tmp_path: Path) -> None:
    # An installed wheel: nothing to start a local stack with, so no hint may send the user
    # to `sales-etl dev up` (which would only answer that it is not installed).
    code = (
        "import sys; sys.modules['sales_etl_dev'] = None; "
        "sys.argv = ['sales-etl', *sys.argv[1:]]; from sales_etl.cli.commands import main; main()"
    )

    def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-c", code, *args],
            cwd=tmp_path,
            env=_bare_env(**env),
            capture_output=True,
            text=True,
        )

    missing = run("runs")
    assert missing.returncode == 1 and "POSTGRES_HOST: not set" in missing.stderr
    assert "export the settings of your deployment" in missing.stderr
    assert "dev up" not in missing.stderr and "Traceback" not in missing.stderr
    doctor = run("doctor")
    assert "export the settings of your deployment" in doctor.stdout
    assert "dev up" not in doctor.stdout + doctor.stderr
    down = run(
        "runs",
        POSTGRES_HOST="127.0.0.1",
        POSTGRES_PORT="9",
        POSTGRES_USER="u",
        POSTGRES_PASSWORD="p",
        POSTGRES_DB="d",
        POSTGRES_CONNECT_TIMEOUT="2",
    )
    assert down.returncode == 1 and "database unreachable" in down.stderr, down.stderr
    assert "dev up" not in down.stderr and "dev env" not in down.stderr


def test_a_checkout_from_before_the_split_builds_a_clean_wheel(tmp_path: Path) -> None:
    # `make setup` before the dev tools moved compiled sales_etl/rpc/_generated/ (git-ignored,
    # so a pull leaves it behind), and an earlier build left an egg-info listing it.
    pytest.importorskip("setuptools")
    import shutil

    src = tmp_path / "src"
    shutil.copytree(ROOT / "sales_etl", src / "sales_etl", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md", "requirements.txt", "requirements-cli.txt"):
        shutil.copy(ROOT / name, src / name)
    stale = src / "sales_etl" / "rpc" / "_generated"
    stale.mkdir(parents=True)
    (stale / "__init__.py").write_text("")
    (stale / "function_rpc_pb2.py").write_text("# generated\n")
    (src / "sales_etl" / "devstack.py.orig").write_text("stale\n")
    egg = src / "sales_etl.egg-info"
    egg.mkdir()
    (egg / "SOURCES.txt").write_text(
        "sales_etl/rpc/_generated/__init__.py\nsales_etl/rpc/_generated/function_rpc_pb2.py\n"
    )
    _wheel(src, tmp_path / "out")
    (wheel,) = (tmp_path / "out").glob("sales_etl-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    assert not [n for n in names if "/rpc/" in n or n.endswith(".orig")], names
    for needed in (
        "sales_etl/py.typed",
        "sales_etl/certs/azure-postgres-roots.pem",
        "sales_etl/datasets/sales.toml",
        "sales_etl/datasets/__init__.py",
        "sales_etl/app/triggers.py",
    ):
        assert needed in names, needed


def test_the_image_leaves_out_what_older_checkouts_left_behind() -> None:
    # `COPY sales_etl` copies the folder as it is on disk, untracked leftovers included
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert "sales_etl/rpc" in ignored and "**/__pycache__" in ignored
