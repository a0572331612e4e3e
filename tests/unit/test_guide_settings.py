"""The docs and the code agree on app settings: every setting the deployment guide
(docs/operations.md) tells you to set is read by the app or by the Functions host, and nothing
Flex Consumption refuses is set; every setting the app or the development tools read is a
row of docs/settings.md's table (named in its first column), every setting of the table is
read by the app, the development tools or the host, and the default the table gives a
setting is the one the code applies."""

from __future__ import annotations

import ast
import contextlib
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from sales_etl.config import settings as settings_module
from sales_etl.config.settings import Settings, load_settings, project_root, read_bindings
from sales_etl.core.errors import ConfigError
from tools.package import ROOT

sys.path.insert(0, str(ROOT / "docs"))
from check_az_commands import commands

GUIDE = (ROOT / "docs" / "operations.md").read_text()
SETTINGS_PAGE = (ROOT / "docs" / "settings.md").read_text()  # the one settings table
# Read by the Functions host, its extensions or the platform, not by this app's code.
HOST_SETTINGS = {
    "AzureWebJobsStorage": "the host's storage (a connection string, locally)",
    "AzureWebJobsStorage__accountName": "identity-based host storage",
    "AzureWebJobsStorage__credential": "identity-based host storage",
    "AzureWebJobsStorage__clientId": "identity-based host storage",
    "SalesStorage__queueServiceUri": "the blob extension's queue endpoint for the trigger",
    "APPLICATIONINSIGHTS_CONNECTION_STRING": "also the host's own telemetry",
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra authentication for telemetry",
    "PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY": "the Python worker's Azure Monitor setup (the app too)",
    "PYTHON_ENABLE_OPENTELEMETRY": "the Python worker's OpenTelemetry mode (OTLP)",
}
NOT_ON_FLEX = {
    "FUNCTIONS_WORKER_RUNTIME",
    "FUNCTIONS_EXTENSION_VERSION",
    "FUNCTIONS_WORKER_RUNTIME_VERSION",
    "WEBSITE_RUN_FROM_PACKAGE",
    "WEBSITE_CONTENTSHARE",
    "WEBSITE_CONTENTAZUREFILECONNECTIONSTRING",
    "SCM_DO_BUILD_DURING_DEPLOYMENT",
    "ENABLE_ORYX_BUILD",
    "WEBSITE_NODE_DEFAULT_VERSION",
}
_NAME = re.compile(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|SalesStorage(?:__\w+)?|AzureWebJobsStorage(?:__\w+)?")
_NOT_SETTINGS = {"SC_AVPHYS_PAGES", "SC_PAGE_SIZE"}  # os.sysconf names in settings.py


class _Recorder(dict[str, str]):
    def __init__(self, values: dict[str, str], seen: set[str]) -> None:
        super().__init__(values)
        self.seen = seen

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.seen.add(key)
        return super().get(key, default)


def code_reads() -> set[str]:
    """What the app reads: recorded while settings are loaded (several shapes of environment),
    plus every setting-like constant of the config modules (settings.py and its parts), and every
    os.environ read of the package."""
    seen: set[str] = set()
    for env in (
        {},
        {"POSTGRES_HOST": "db.example.com", "POSTGRES_SSLMODE": "require"},
        {"DESIRED_CHUNK_FRACTION": "0.1"},
        {
            "SalesStorage__blobServiceUri": "https://x.blob.core.windows.net",
            "SalesStorage__queueServiceUri": "https://x.queue.core.windows.net",
        },
    ):
        with contextlib.suppress(Exception):  # only the names read matter here
            load_settings(_Recorder(env, seen))
        read_bindings(_Recorder(env, seen))
    for part in Path(settings_module.__file__).parent.glob("*.py"):  # config: settings and its parts
        tree = ast.parse(part.read_text())
        seen |= {
            n.value
            for n in ast.walk(tree)
            if isinstance(n, ast.Constant) and isinstance(n.value, str) and _NAME.fullmatch(n.value)
        } - _NOT_SETTINGS
    for path in (ROOT / "sales_etl").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) in ("os.environ.get", "os.getenv")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                seen.add(node.args[0].value)
    return seen


def guide_app_settings() -> set[str]:
    """The names the guide sets: every NAME=value of its `az functionapp config appsettings set`."""
    names: set[str] = set()
    for cmd in commands(GUIDE):
        if cmd.path == ("functionapp", "config", "appsettings", "set"):
            tokens = shlex.split(cmd.text)
            start = tokens.index("--settings") + 1
            for token in tokens[start:]:
                if token.startswith("--"):
                    break
                names.add(token.split("=", 1)[0])
    return names


def dev_reads() -> set[str]:
    """The development tools' settings: the setting-like constants of their one reader."""
    tree = ast.parse((ROOT / "dev" / "sales_etl_dev" / "devsettings.py").read_text())
    return {
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and re.fullmatch(r"SALES_ETL_\w+", n.value)
    }


@dataclass(frozen=True)
class Row:
    names: tuple[str, ...]  # the first cell's settings, in order
    default: str  # the second cell, as written
    line: str


def table_rows(page: str = SETTINGS_PAGE) -> list[Row]:
    """The rows of docs/settings.md's table (the first cell names the settings)."""
    rows = []
    for line in page.splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line)
            rows.append(Row(tuple(re.findall(r"`([^`]+)`", cells[1])), cells[2].strip(), line))
    return rows


def table_settings(page: str = SETTINGS_PAGE) -> set[str]:
    """The settings of docs/settings.md's table: the names in the first cell of each row."""
    return {name for row in table_rows(page) for name in row.names}


def table_defaults(page: str = SETTINGS_PAGE) -> dict[str, str]:
    """Each setting's default as the table writes it: a row naming several settings gives
    them one default, or one each, comma-separated (``60``, ``21600``)."""
    out: dict[str, str] = {}
    for row in table_rows(page):
        parts = [p.strip() for p in row.default.split(",")]
        each = (
            parts if len(row.names) > 1 and len(parts) == len(row.names) else [row.default] * len(row.names)
        )
        out.update(zip(row.names, each, strict=True))
    return out


def code_blocks() -> str:
    """The text of every fenced block of the guide."""
    inside, lines = False, []
    for line in GUIDE.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return "\n".join(lines)


def test_every_setting_the_guide_sets_is_read_by_the_app_or_the_host() -> None:
    set_here = guide_app_settings()
    assert {"SalesStorage__blobServiceUri", "FERNET_KEYS", "POSTGRES_AUTH"} <= set_here
    unknown = set_here - code_reads() - set(HOST_SETTINGS)
    assert not unknown, f"the guide sets what nothing reads: {sorted(unknown)}"


def test_every_setting_the_app_reads_is_a_row_of_the_table() -> None:
    missing = code_reads() - table_settings()
    assert not missing, f"read by the app, not a row of docs/settings.md's table: {sorted(missing)}"


def test_every_development_setting_is_a_row_of_the_table() -> None:
    read = dev_reads()
    assert {"SALES_ETL_PG_BIN", "SALES_ETL_PGBOUNCER"} <= read
    missing = read - table_settings()
    assert not missing, f"read by dev/, not a row of docs/settings.md's table: {sorted(missing)}"


def test_a_setting_named_only_in_prose_is_not_a_row() -> None:
    """(The row check reads the first column only: a name in another cell or in the text
    around the table is not a row.)"""
    page = "text naming `CHUNK_SIZE`\n| `A_SETTING` (or `AN_ALIAS`) | `1` | like `CHUNK_SIZE` |\n"
    assert table_settings(page) == {"A_SETTING", "AN_ALIAS"}
    assert [row.names for row in table_rows(page)] == [("A_SETTING", "AN_ALIAS")]


def test_every_setting_of_the_table_is_read() -> None:
    listed = table_settings()
    assert {"SalesStorage", "POSTGRES_HOST", "FERNET_KEYS", "SALES_ETL_PG_BIN"} <= listed
    unread = listed - code_reads() - dev_reads() - set(HOST_SETTINGS)
    assert not unread, f"in docs/settings.md's table, read by nothing: {sorted(unread)}"


def test_the_guide_sets_nothing_flex_consumption_refuses() -> None:
    assert not guide_app_settings() & NOT_ON_FLEX
    blocks = code_blocks()
    assert "az functionapp create" in blocks
    for name in NOT_ON_FLEX:
        assert name not in blocks, name


# ------------------------------------------------------------------------------ defaults

_LOCAL_DB = {"POSTGRES_HOST": "localhost", "POSTGRES_USER": "u", "POSTGRES_DB": "d"}
_REMOTE_DB = {**_LOCAL_DB, "POSTGRES_HOST": "db.example.com"}
_AZURE_DB = {**_LOCAL_DB, "POSTGRES_HOST": "x.postgres.database.azure.com"}
# A setting whose table default is one value: (an environment where the setting matters,
# another valid value). Setting the documented default must load exactly what leaving the
# setting unset loads, and the other value something else (so the comparison can fail).
LITERAL_DEFAULTS: dict[str, tuple[dict[str, str], str]] = {
    "SALES_CONTAINER": ({}, "other"),
    "AZ_CONTAINER_NAME": ({}, "other"),
    "SALES_TRIGGER_SOURCE": ({}, "eventgrid"),
    "SWEEP_SCHEDULE": ({}, "0 */5 * * * *"),
    "POSTGRES_PORT": (_LOCAL_DB, "6432"),
    "POSTGRES_ALLOW_INSECURE": ({**_REMOTE_DB, "POSTGRES_SSLMODE": "disable"}, "true"),
    "POSTGRES_CONNECT_TIMEOUT": (_LOCAL_DB, "30"),
    "POSTGRES_AUTH": (_LOCAL_DB, "entra"),
    "CHUNK_SIZE": ({}, "500"),
    "AVG_ROW_SIZE_BYTES": ({"DESIRED_CHUNK_FRACTION": "0.5"}, "2048"),
    "RETRY_MAX_ATTEMPTS": ({}, "3"),
    "RETRY_BASE_SECONDS": ({}, "30"),
    "RETRY_MAX_SECONDS": ({}, "3600"),
    "LOG_LEVEL": ({}, "DEBUG"),
    "ENVIRONMENT": ({}, "production"),
}
# Defaults the table states in words; each is checked by its own test below, against this
# very text (a changed cell fails until its check follows).
WORDED_DEFAULTS = {
    "POSTGRES_SSLMODE": "`prefer` for a local host, `verify-full` otherwise",
    "POSTGRES_SSLROOTCERT": (
        "with `verify-ca` / `verify-full`, for a `*.postgres.database.azure.com` host: "
        "the shipped Azure roots (as `azure`); else none"
    ),
    "POSTGRES_ADMIN_USER": "the loader's",
    "POSTGRES_ADMIN_PASSWORD": "the loader's",
    "SALES_ETL_HOME": "the checkout",
    "SALES_ETL_PG_BIN": "found",
    "SALES_ETL_PGBOUNCER": "found",
}


def _loaded(env: dict[str, str]) -> Settings | str:
    """What the app makes of ``env``: its settings, or the error naming what is wrong."""
    try:
        return load_settings(env)
    except ConfigError as exc:
        return str(exc)


@pytest.fixture
def fixed_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    """The free memory the chunk sizing reads, fixed (100 MB), so that a row size changes
    the chunk's rows."""
    pages = {"SC_AVPHYS_PAGES": 25_000, "SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(settings_module.os, "sysconf", lambda name: pages[name])


def default_problems(page: str = SETTINGS_PAGE) -> list[str]:
    out = []
    reads = code_reads()
    for name, written in sorted(table_defaults(page).items()):
        literal = re.fullmatch(r"`([^`]+)`", written)
        if written == "-" or (name in HOST_SETTINGS and name not in reads):
            continue
        if name in WORDED_DEFAULTS:
            if written != WORDED_DEFAULTS[name]:
                out.append(f"{name}: the table says {written!r}, its check reads {WORDED_DEFAULTS[name]!r}")
            continue
        if literal is None or name not in LITERAL_DEFAULTS:
            out.append(f"{name}: default {written!r}, which no check here compares with the code")
            continue
        env, other = LITERAL_DEFAULTS[name]
        unset = _loaded(env)
        if _loaded({**env, name: literal.group(1)}) != unset:
            out.append(f"{name}: the table's default {written} is not what the app applies when it is unset")
        if _loaded({**env, name: other}) == unset:
            out.append(f"{name}: {other!r} loads what unset loads: the comparison cannot fail here")
    return out


@pytest.mark.usefixtures("fixed_memory")
def test_each_default_of_the_table_is_the_codes() -> None:
    assert default_problems() == []


@pytest.mark.usefixtures("fixed_memory")
def test_a_wrong_default_fails() -> None:
    """(The comparison cannot pass by reading nothing.)"""
    defaults = table_defaults()
    assert defaults["CHUNK_SIZE"] == "`10000`" and defaults["RETRY_MAX_SECONDS"] == "`21600`"
    assert defaults["AVG_ROW_SIZE_BYTES"] == "`1024`" and defaults["DESIRED_CHUNK_FRACTION"] == "-"
    planted = (
        SETTINGS_PAGE.replace("| `CHUNK_SIZE` | `10000` |", "| `CHUNK_SIZE` | `20000` |")
        .replace("| -, `1024` |", "| -, `2048` |")
        .replace("| `LOG_LEVEL` | `INFO` |", "| `LOG_LEVEL` | `WARNING` |")
        .replace("| `ENVIRONMENT` | `local` |", "| `ENVIRONMENT` | none |")
    )
    assert planted.count("`20000`") == 1 and "| -, `2048` |" in planted
    assert default_problems(planted) == [
        "AVG_ROW_SIZE_BYTES: the table's default `2048` is not what the app applies when it is unset",
        "CHUNK_SIZE: the table's default `20000` is not what the app applies when it is unset",
        "ENVIRONMENT: default 'none', which no check here compares with the code",
        "LOG_LEVEL: the table's default `WARNING` is not what the app applies when it is unset",
    ]


def test_the_ssl_defaults_are_the_codes() -> None:
    """``prefer`` for a local host, ``verify-full`` for any other; the shipped Azure roots
    for an Azure host when verifying, nothing otherwise."""
    from sales_etl.config.connections import AZURE_PG_SUFFIX

    assert table_defaults()["POSTGRES_SSLMODE"] == WORDED_DEFAULTS["POSTGRES_SSLMODE"]
    for env, mode in ((_LOCAL_DB, "prefer"), (_REMOTE_DB, "verify-full")):
        assert _loaded({**env, "POSTGRES_SSLMODE": mode}) == _loaded(env), mode
        assert _loaded({**env, "POSTGRES_SSLMODE": "require"}) != _loaded(env), mode
    written = table_defaults()["POSTGRES_SSLROOTCERT"]
    assert written == WORDED_DEFAULTS["POSTGRES_SSLROOTCERT"]
    assert f"`*{AZURE_PG_SUFFIX}`" in written
    for mode in ("verify-ca", "verify-full"):
        azure = {**_AZURE_DB, "POSTGRES_SSLMODE": mode}
        assert _loaded({**azure, "POSTGRES_SSLROOTCERT": "azure"}) == _loaded(azure), mode
        assert load_settings({**_REMOTE_DB, "POSTGRES_SSLMODE": mode}).require_database().sslrootcert is None
    assert load_settings({**_AZURE_DB, "POSTGRES_SSLMODE": "require"}).require_database().sslrootcert is None


def test_the_admin_defaults_to_the_loader() -> None:
    for name in ("POSTGRES_ADMIN_USER", "POSTGRES_ADMIN_PASSWORD"):
        assert table_defaults()[name] == WORDED_DEFAULTS[name]
    loaded = load_settings({**_LOCAL_DB, "POSTGRES_PASSWORD": "pw"})
    assert loaded.require_admin_database() == loaded.require_database()
    admin = load_settings({**_LOCAL_DB, "POSTGRES_ADMIN_USER": "owner"})
    assert admin.require_admin_database() != admin.require_database()


def test_the_development_defaults_are_the_codes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``SALES_ETL_HOME``: the checkout; the two binaries: found (unset, the tools look for
    them: ``None`` in ``DevSettings``)."""
    from sales_etl_dev.devsettings import DevSettings, dev_settings

    defaults = table_defaults()
    for name in ("SALES_ETL_HOME", "SALES_ETL_PG_BIN", "SALES_ETL_PGBOUNCER"):
        assert defaults[name] == WORDED_DEFAULTS[name]
    monkeypatch.delenv("SALES_ETL_HOME", raising=False)
    assert project_root() == ROOT
    monkeypatch.setenv("SALES_ETL_HOME", str(tmp_path))
    assert project_root() == tmp_path
    assert dev_settings({}) == DevSettings(pg_bin=None, pgbouncer=None)
    (tmp_path / "postgres").write_text("")
    assert dev_settings(
        {"SALES_ETL_PG_BIN": str(tmp_path), "SALES_ETL_PGBOUNCER": str(tmp_path / "postgres")}
    ) == (DevSettings(pg_bin=tmp_path, pgbouncer=tmp_path / "postgres"))
