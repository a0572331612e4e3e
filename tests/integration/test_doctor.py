"""sales-etl doctor on the real stack: green when healthy, red with a named fix for each
fault introduced."""

from __future__ import annotations

from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient
from click.testing import CliRunner
from cryptography.fernet import Fernet

from sales_etl.cli.commands import main
from sales_etl.cli.doctor import Check, run
from sales_etl.config.settings import Settings
from sales_etl.storage.container import upload
from sales_etl_dev import devstack, hostcall
from sales_etl_dev.generate import generate

from .conftest import query


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


@pytest.fixture
def loaded(
    stack: devstack.StackState, settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    g = generate(tmp_path / "doc.csv", 200, seed=81)
    hostcall.invoke_blob_trigger(settings.container, upload(cc, g.path))


def test_healthy_stack_is_green(stack: devstack.StackState, loaded: None) -> None:
    checks = run(stack.env())
    assert [c.name for c in checks if not c.ok] == []
    names = {c.name for c in checks}
    assert names >= {
        "settings",
        "function bindings",
        "storage",
        "dead letters",
        "database",
        "TLS",
        "migrations",
        "encryption keys",
        "blind-index key",
        "datasets",
    }
    result = CliRunner().invoke(main, ["doctor"], env=stack.env())
    assert result.exit_code == 0 and "all checks passed" in result.output


@pytest.mark.parametrize(
    ("change", "failing", "fix"),
    [
        ({"POSTGRES_PORT": "1", "POSTGRES_CONNECT_TIMEOUT": "1"}, "database", ""),
        ({"SALES_CONTAINER": "nosuchcontainer"}, "storage", "init-storage"),
        ({"POSTGRES_SSLMODE": "require"}, "TLS", "verify-full"),
        ({"FERNET_KEYS": "NEWKEY,OLDKEY"}, "encryption keys", "rotate-keys"),
        (
            {"BLIND_INDEX_KEY": "V1JPTkdfV1JPTkdfV1JPTkdfV1JPTkdfV1JPTkdfV1JPTkc="},
            "blind-index key",
            "BLIND_INDEX_KEY",
        ),
        ({"SWEEP_SCHEDULE": "every ten minutes"}, "function bindings", "settings named"),
        ({"SALES_TRIGGER_SOURCE": "webhook"}, "function bindings", "settings named"),
        ({"AzureWebJobsStorage": ""}, "host storage", "AzureWebJobsStorage"),
        # what the host receives when App Service could not resolve the reference
        (
            {"AzureWebJobsStorage": "@Microsoft.KeyVault(SecretUri=https://v.vault.azure.net/secrets/s/)"},
            "host storage",
            "AzureWebJobsStorage",
        ),
    ],
)
def test_each_fault_is_named_with_its_fix(
    stack: devstack.StackState, loaded: None, change: dict[str, str], failing: str, fix: str
) -> None:
    env = dict(stack.env())
    for key, value in change.items():
        env[key] = value.replace("NEWKEY", Fernet.generate_key().decode()).replace("OLDKEY", stack.fernet_key)
    checks = by_name(run(env))
    assert not checks[failing].ok, checks[failing]
    assert fix in checks[failing].fix
    result = CliRunner().invoke(main, ["doctor"], env=env)
    assert result.exit_code == 1 and f"FAIL  {failing}" in result.output


def test_only_the_original_connection_name_is_not_a_green_doctor(stack: devstack.StackState) -> None:
    """AZ_CONNECTION_STRING alone: the host cannot start the trigger with it, so doctor
    must not pass; it says which name to use."""
    env = {k: v for k, v in stack.env().items() if k != "SalesStorage"}
    env["AZ_CONNECTION_STRING"] = stack.storage_connection_string
    checks = run(env)
    assert [c.name for c in checks if not c.ok] == ["settings"]
    assert "AZ_CONNECTION_STRING" in checks[0].detail and "SalesStorage" in checks[0].detail
    identity = {k: v for k, v in stack.env().items() if k != "SalesStorage"}
    identity["SalesStorage__serviceUri"] = "https://acct.blob.core.windows.net"
    [settings] = run(identity)
    assert not settings.ok and "SalesStorage__queueServiceUri" in settings.detail


def test_pending_migration_and_dead_letters(
    stack: devstack.StackState, settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    extra = tmp_path / "migrations"
    extra.mkdir()
    (extra / "V900__later.sql").write_text("SELECT 1")
    cc.get_blob_client("deadletter/sales/x.csv").upload_blob(b"x")
    checks = by_name(run({**stack.env(), "MIGRATIONS_DIR": str(extra)}))
    assert not checks["migrations"].ok and "V900" in checks["migrations"].detail
    assert checks["migrations"].fix == "sales-etl migrate"
    assert not checks["dead letters"].ok
    assert query(settings, "SELECT count(*) FROM schema_migrations WHERE version = 900") == [(0,)]
