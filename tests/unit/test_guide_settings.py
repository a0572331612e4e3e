"""The docs and the code agree on app settings: every setting the deployment guide
(docs/operations.md) tells you to set is read by the app or by the Functions host, and nothing
Flex Consumption refuses is set; every setting the app reads is named in docs/settings.md, and
every setting of its table is read by the app, the development tools or the host."""

from __future__ import annotations

import ast
import contextlib
import re
import shlex
import sys
from pathlib import Path

from sales_etl.config import settings as settings_module
from sales_etl.config.settings import load_settings, read_bindings
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


def mentioned(name: str, text: str = SETTINGS_PAGE) -> bool:
    return re.search(rf"(?<![\w]){re.escape(name)}(?![\w])", text) is not None


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


def table_settings() -> set[str]:
    """The settings of docs/settings.md's table: the names in the first cell of each row."""
    rows = [line.split("|")[1] for line in SETTINGS_PAGE.splitlines() if line.startswith("| `")]
    return {name for cell in rows for name in re.findall(r"`([^`]+)`", cell)}


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


def test_every_setting_the_app_reads_is_in_the_settings_page() -> None:
    missing = {name for name in code_reads() if not mentioned(name)}
    assert not missing, f"read by the app, not in docs/settings.md: {sorted(missing)}"


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
