"""Identity-based connections: no key anywhere. (Azure itself cannot run here: the
credential is the one thing faked, the clients and settings paths are real.)"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from azure.identity import ManagedIdentityCredential

from sales_etl.config import identity
from sales_etl.config.settings import load_settings
from sales_etl.storage import container as storage

BASE = {
    "POSTGRES_HOST": "db.example.com",
    "POSTGRES_USER": "sales-etl-identity",
    "POSTGRES_DB": "sales",
    "POSTGRES_AUTH": "entra",
}


def test_storage_client_uses_the_managed_identity() -> None:
    settings = load_settings(
        {
            "SalesStorage__blobServiceUri": "https://acct.blob.core.windows.net",
            "SalesStorage__queueServiceUri": "https://acct.queue.core.windows.net",
            "SalesStorage__credential": "managedidentity",
            "SalesStorage__clientId": "1234",
        }
    )
    client = storage.service_client(settings.require_storage())
    assert client.url.startswith("https://acct.blob.core.windows.net")
    assert isinstance(client.credential, ManagedIdentityCredential)
    assert client.credential.__dict__ != {} and client.account_name == "acct"
    assert "AccountKey" not in repr(settings)


def test_postgres_password_is_a_fresh_entra_token(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []

    class FakeCredential:
        def get_token(self, scope: str) -> SimpleNamespace:
            calls.append(scope)
            return SimpleNamespace(token=f"token-{len(calls)}", expires_on=0)

    monkeypatch.setattr(identity, "credential", lambda client_id: FakeCredential())
    db = load_settings(BASE).require_database()
    assert db.password is None and db.auth == "entra" and db.sslmode == "verify-full"
    first, second = db.connect_kwargs()["password"], db.connect_kwargs()["password"]
    assert (first, second) == ("token-1", "token-2")  # asked at every connection
    assert calls == [identity.POSTGRES_SCOPE] * 2


def test_entra_and_a_password_together_are_refused() -> None:
    from sales_etl.core.errors import ConfigError

    with pytest.raises(ConfigError, match="POSTGRES_PASSWORD"):
        load_settings({**BASE, "POSTGRES_PASSWORD": "x"})
    with pytest.raises(ConfigError, match="POSTGRES_AUTH"):
        load_settings({**BASE, "POSTGRES_AUTH": "kerberos"})
