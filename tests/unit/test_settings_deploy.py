"""Settings as Azure delivers them: unresolved Key Vault references, and the CA for
verify-full (the roots shipped in the package)."""

from __future__ import annotations

import base64
import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from sales_etl.config.connections import AZURE_PG_ROOTS, SYSTEM_CA_FILES
from sales_etl.config.settings import load_settings, read_bindings
from sales_etl.core.errors import ConfigError

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
AZURE = {
    "SalesStorage__blobServiceUri": "https://acct.blob.core.windows.net",
    "SalesStorage__queueServiceUri": "https://acct.queue.core.windows.net",
    "SalesStorage__credential": "managedidentity",
    "POSTGRES_HOST": "srv.postgres.database.azure.com",
    "POSTGRES_USER": "id-sales",
    "POSTGRES_DB": "sales",
    "POSTGRES_AUTH": "entra",
    "FERNET_KEYS": KEY,
    "BLIND_INDEX_KEY": KEY,
}
REF = "@Microsoft.KeyVault(SecretUri=https://kv-sales.vault.azure.net/secrets/fernet-keys/)"
ROOTS = {
    "DigiCert Global Root G2": "CB3CCBB76031E5E0138F8DD39A23F9DE47FFC35E43C1144CEA27D46A5AB1CB5F",
    "Microsoft RSA Root Certificate Authority 2017": (
        "C741F70F4B2A8D88BF2E71C14122EF53EF10EBA0CFA5E64CFA20F418853073E0"
    ),
}


@pytest.mark.parametrize(
    "name",
    [
        "FERNET_KEYS",
        "BLIND_INDEX_KEY",
        "POSTGRES_PASSWORD",
        "SalesStorage",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
    ],
)
def test_an_unresolved_key_vault_reference_is_named_as_such(name: str) -> None:
    env = {**AZURE, name: REF}
    if name == "POSTGRES_PASSWORD":
        env.pop("POSTGRES_AUTH")
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    message = err.value.message
    assert f"{name}: is an unresolved Key Vault reference" in message
    assert "keyVaultReferenceIdentity" in message and "Key Vault Secrets User" in message
    assert "not a Fernet key" not in message and "base64" not in message
    assert "kv-sales" not in message  # the reference is not echoed


def test_a_reference_in_any_case_and_with_spaces_is_recognised() -> None:
    env = {**AZURE, "FERNET_KEYS": "  @microsoft.keyvault(VaultName=kv;SecretName=fernet) "}
    with pytest.raises(ConfigError, match="FERNET_KEYS: is an unresolved Key Vault reference"):
        load_settings(env)
    # a binding setting the host cannot use leaves its function out, named, never echoed
    problems = " ".join(read_bindings({"SALES_CONTAINER": REF}).problems)
    assert "SALES_CONTAINER: is an unresolved Key Vault" in problems and "kv-sales" not in problems


def test_an_azure_host_verifies_against_the_shipped_roots_by_default() -> None:
    db = load_settings(AZURE).require_database()
    assert (db.sslmode, db.sslrootcert) == ("verify-full", str(AZURE_PG_ROOTS))
    named = load_settings({**AZURE, "POSTGRES_SSLROOTCERT": "azure"}).require_database()
    assert named.sslrootcert == str(AZURE_PG_ROOTS)


def test_system_means_the_os_trust_store_file() -> None:
    present = next((f for f in SYSTEM_CA_FILES if Path(f).is_file()), None)
    if present is None:
        with pytest.raises(ConfigError, match="POSTGRES_SSLROOTCERT: 'system'"):
            load_settings({**AZURE, "POSTGRES_SSLROOTCERT": "system"})
    else:
        db = load_settings({**AZURE, "POSTGRES_SSLROOTCERT": "system"}).require_database()
        assert db.sslrootcert == present


def test_an_explicit_file_wins_and_a_missing_one_is_named(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    assert load_settings({**AZURE, "POSTGRES_SSLROOTCERT": str(ca)}).require_database().sslrootcert == str(ca)
    with pytest.raises(ConfigError, match="POSTGRES_SSLROOTCERT: no file at"):
        load_settings({**AZURE, "POSTGRES_SSLROOTCERT": str(tmp_path / "nope.pem")})


def test_a_non_azure_host_keeps_libpq_defaults() -> None:
    db = load_settings({**AZURE, "POSTGRES_HOST": "db.example.com"}).require_database()
    assert db.sslrootcert is None


def test_the_shipped_bundle_is_exactly_the_two_azure_roots() -> None:
    certs = x509.load_pem_x509_certificates(AZURE_PG_ROOTS.read_bytes())
    found = {}
    for cert in certs:
        cn = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value
        found[cn] = cert.fingerprint(hashes.SHA256()).hex().upper()
        assert cert.subject == cert.issuer  # self-signed roots
        assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
        assert cert.not_valid_after_utc > dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert len(certs) == 2 and found == ROOTS
    assert b"PRIVATE KEY" not in AZURE_PG_ROOTS.read_bytes()


def test_an_unresolved_app_configuration_reference_is_named_too() -> None:
    env = {**AZURE, "CHUNK_SIZE": "@Microsoft.AppConfiguration(Endpoint=https://cfg.azconfig.io; Key=chunk)"}
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    assert "CHUNK_SIZE: is an unresolved App Configuration reference" in err.value.message
    assert "not a whole number" not in err.value.message and "cfg.azconfig" not in err.value.message
