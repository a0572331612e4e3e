"""An app setting that App Service could not resolve reaches the worker as the reference text
itself. The invocation fails saying exactly that (naming the setting, not echoing the vault),
and loses nothing: the blob stays in incoming/, no ledger row, no data; once the reference
resolves, the same blob loads."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.app import triggers
from sales_etl.config.settings import Settings
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import generate

from .conftest import names, query

REF = "@Microsoft.KeyVault(SecretUri=https://kv-sales-secret-name.vault.azure.net/secrets/fernet-keys/)"


@pytest.fixture
def fresh_settings() -> Iterator[None]:
    triggers.settings.cache_clear()
    yield
    triggers.settings.cache_clear()


def test_an_unresolved_reference_fails_the_invocation_and_loses_nothing(
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_settings: None,
) -> None:
    blob = storage.upload(cc, generate(tmp_path / "kv.csv", 200, seed=41).path)
    monkeypatch.setenv("FERNET_KEYS", REF)
    with pytest.raises(hostcall.InvocationFailed) as err:  # the worker reports the failure
        hostcall.invoke_blob_trigger(settings.container, blob)
    message = err.value.worker_message
    assert message.startswith("ConfigError: ")
    assert "FERNET_KEYS: is an unresolved Key Vault reference" in message
    assert "keyVaultReferenceIdentity" in message
    assert "kv-sales-secret-name" not in message and "not a Fernet key" not in message
    assert names(cc) == [blob]
    assert query(settings, "SELECT count(*) FROM etl_runs") == [(0,)]
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]

    monkeypatch.undo()  # the platform resolved the reference (after a restart)
    triggers.settings.cache_clear()
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert names(cc, "processed/") == [f"processed/sales/{datetime.now(UTC):%Y/%m/%d}/kv.csv"]
    assert query(settings, "SELECT count(*) FROM sales") == [(200,)]
