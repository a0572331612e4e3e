"""config.reader: one value at a time from a mapping, every problem collected, no raise;
and no module but settings and its parts reads the environment."""

from __future__ import annotations

import ast
from pathlib import Path

import sales_etl
from sales_etl.config.reader import AppSettingsReader, Secret


def test_blank_values_are_unset_and_the_first_set_name_wins() -> None:
    r = AppSettingsReader({"A": "   ", "B": " value ", "C": "other"})
    assert r.get("A") is None
    assert r.get("A", "B", "C") == "value"
    assert r.get("MISSING") is None
    assert r.problems == []


def test_integers_are_bounded_and_each_refusal_is_named() -> None:
    r = AppSettingsReader({"N": "7", "LOW": "0", "HIGH": "11", "WORD": "seven"})
    assert r.integer("N", 1, minimum=1, maximum=10) == 7
    assert r.integer("UNSET", 3, minimum=1) == 3
    assert r.integer("LOW", 2, minimum=1, maximum=10) == 2
    assert r.integer("HIGH", 2, minimum=1, maximum=10) == 2
    assert r.integer("WORD", 2, minimum=1) == 2
    assert r.problems == [
        "LOW: 0 must be between 1 and 10",
        "HIGH: 11 must be between 1 and 10",
        "WORD: 'seven' is not a whole number",
    ]


def test_flags_read_only_their_true_words() -> None:
    r = AppSettingsReader({"ON": "TRUE", "ONE": "1", "YES": "yes", "OFF": "false"})
    assert r.flag("ON") and r.flag("ONE")
    assert not r.flag("YES") and not r.flag("OFF") and not r.flag("UNSET")
    assert r.flag("YES", frozenset({"yes"}))
    assert r.problems == []


def test_an_unresolved_reference_reads_as_unset_and_is_named_without_its_text() -> None:
    reference = "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/k/)"
    r = AppSettingsReader({"KEY": reference, "CONF": "@Microsoft.AppConfiguration(Endpoint=x)"})
    assert r.get("KEY") is None and r.get("CONF") is None
    [vault, config] = r.problems
    assert vault.startswith("KEY: is an unresolved Key Vault reference")
    assert "Key Vault Secrets User" in vault and reference not in vault
    assert config.startswith("CONF: is an unresolved App Configuration reference")
    assert "Endpoint=x" not in config


def test_a_secret_never_shows_itself() -> None:
    secret = Secret("hunter2")
    assert "hunter2" not in f"{secret} {secret!r} {[secret]}"
    assert secret.get() == "hunter2"
    assert secret == Secret("hunter2") and secret != Secret("other")
    assert len({secret, Secret("hunter2")}) == 1


# The dev tooling that still reads its own variables (SALES_ETL_PG_BIN, SALES_ETL_PGBOUNCER)
# or hands the app settings to a child process; it is leaving the package for a dev package.
def test_only_the_settings_modules_read_the_environment() -> None:
    package = Path(sales_etl.__file__).parent
    readers = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        if rel == "config/settings.py":  # the one reader of the environment
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            reads = (
                isinstance(node, ast.Attribute) and ast.unparse(node) in ("os.environ", "os.getenv")
            ) or (
                isinstance(node, ast.ImportFrom)
                and node.module == "os"
                and any(a.name in ("environ", "getenv") for a in node.names)
            )
            if reads:
                readers.add(f"{rel}:{getattr(node, 'lineno', 0)}")
    assert not readers, f"read the environment outside settings: {sorted(readers)}"


# The development package reads its settings in devsettings; two other uses of the
# environment there are not reads of a setting: the local stack hands it on to Azurite's
# process, and the host driver writes the app settings as the Functions host would.
_DEV_ENV_USES = {"devstack.py": "{**os.environ", "hostcall.py": "os.environ.update("}


def test_the_dev_package_reads_the_environment_in_devsettings_only() -> None:
    package = Path(__file__).resolve().parents[2] / "dev" / "sales_etl_dev"
    found = set()
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if (
                ("os.environ" in line or "os.getenv" in line)
                and rel != "devsettings.py"
                and (_DEV_ENV_USES.get(rel, "\0") not in line)
            ):
                found.add(f"{rel}:{number}")
    assert not found, f"read the environment outside devsettings: {sorted(found)}"
