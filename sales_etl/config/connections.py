"""The two connections of the app, parsed for ``settings.py``: storage and PostgreSQL.

Contract:

- ``read_storage(reader)`` resolves the trigger's connection (``SalesStorage``) exactly as
  the Functions host and the worker's blob extension resolve it
  (``hostsettings.trigger_connection``), so the package's own clients use the connection the
  trigger uses: a connection string, or an identity-based ``__blobServiceUri`` (+
  ``__queueServiceUri``, ``__credential``, ``__clientId``). None when no storage is set.
- ``read_database(reader)`` reads the ``POSTGRES_*`` settings: TLS defaults to ``prefer`` for
  a local host and ``verify-full`` otherwise; a non-local host without TLS is refused unless
  ``POSTGRES_ALLOW_INSECURE`` says so; the CA file defaults to the Azure roots shipped in the
  package for an Azure Database for PostgreSQL host. None when ``POSTGRES_HOST`` is unset.
- Both read only through the ``AppSettingsReader`` they are given, never the environment,
  and add every problem to its list (never raise), so that one error names them all.
  Values that may be secrets are wrapped in ``Secret``; messages show values only through
  ``hostsettings.show`` (which hides anything secret-shaped).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from sales_etl.config import hostsettings
from sales_etl.config.hostsettings import SettingError, secret_shaped, show
from sales_etl.config.reader import AppSettingsReader, Secret

STORAGE_CONNECTION = "SalesStorage"  # the app-setting *name* shared by trigger and clients
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}
SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# The public roots Azure Database for PostgreSQL chains to, shipped inside the package
# (sales_etl/certs/): the CA file when POSTGRES_SSLROOTCERT is unset for an Azure host, or "azure".
AZURE_PG_ROOTS = Path(__file__).resolve().parents[1] / "certs" / "azure-postgres-roots.pem"
AZURE_PG_SUFFIX = ".postgres.database.azure.com"
# Where Debian/Ubuntu (the Functions Linux images) and RHEL-likes keep the OS trust store. libpq's
# own sslrootcert=system would ask the OpenSSL bundled in psycopg2-binary, whose store directory
# is a path of its build machine: "system" is resolved to one of these files instead.
SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")


@dataclass(frozen=True)
class StorageSettings:
    connection_name: str
    connection_string: Secret | None = None
    service_uri: str | None = None
    credential: str | None = None  # "managedidentity" or None (DefaultAzureCredential)
    client_id: str | None = None

    @property
    def uses_identity(self) -> bool:
        return self.connection_string is None and self.service_uri is not None


@dataclass(frozen=True)
class DatabaseSettings:
    host: str
    port: int
    user: str
    password: Secret | None
    dbname: str
    sslmode: str
    sslrootcert: str | None
    connect_timeout: int = 10
    auth: str = "password"  # or "entra": a Microsoft Entra token is the password
    entra_client_id: str | None = None

    @property
    def is_local(self) -> bool:
        return self.host.startswith("/") or self.host in LOCAL_HOSTS

    def connect_kwargs(self) -> dict[str, object]:
        """Keyword arguments for psycopg2.connect; the password only here, never logged."""
        kwargs: dict[str, object] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "dbname": self.dbname,
            "connect_timeout": self.connect_timeout,
            "application_name": "sales-etl",
        }
        if not self.host.startswith("/"):
            kwargs["sslmode"] = self.sslmode
            if self.sslrootcert:
                kwargs["sslrootcert"] = self.sslrootcert
        if self.auth == "entra":
            from sales_etl.config.identity import database_token

            kwargs["password"] = database_token(self.entra_client_id)
        elif self.password is not None:
            kwargs["password"] = self.password.get()
        return kwargs

    def describe(self) -> str:
        """A safe one-line description for logs (no password)."""
        tls = "unix socket" if self.host.startswith("/") else f"sslmode={self.sslmode}"
        return f"{self.user}@{self.host}:{self.port}/{self.dbname} ({tls})"


def read_storage(r: AppSettingsReader) -> StorageSettings | None:
    """The trigger's connection, resolved as the host and the worker's blob extension
    resolve it (hostsettings.trigger_connection): the package's clients use the same one."""
    name = STORAGE_CONNECTION
    if r.get("AZ_CONNECTION_STRING") is not None and r.get(name) is None:
        r.problems.append(
            f"AZ_CONNECTION_STRING: no longer read (the blob trigger cannot use "
            f"it); set {name} to the same connection string"
        )
    present = [k for k in r.env if k == name or k.startswith(f"{name}__") or k == f"AzureWebJobs{name}"]
    before = len(r.problems)
    values = [r.get(k) for k in present]  # names an unresolved Key Vault reference
    if len(r.problems) > before or not any(values):
        return None
    incomplete = False
    try:
        kind, value = hostsettings.trigger_connection(name, r.env)
    except SettingError as exc:
        r.problems.append(f"{name}: {exc}")
        # still check what is there, so that one error names every problem
        kind, value = "identity", r.get(f"{name}__blobServiceUri", f"{name}__serviceUri")
        if value is None:
            return None
        incomplete = True
    if value is None:
        return None
    if kind == "string":
        return _connection_string(r, name, value)
    storage = _identity_connection(r, name, value)
    return None if incomplete else storage


def _connection_string(r: AppSettingsReader, name: str, conn: str) -> StorageSettings:
    parts = dict(p.split("=", 1) for p in conn.split(";") if "=" in p)
    if not ({"AccountName", "BlobEndpoint"} & parts.keys()) and "UseDevelopmentStorage" not in conn:
        r.problems.append(f"{name}: not a storage connection string (no AccountName, BlobEndpoint)")
    return StorageSettings(name, connection_string=Secret(conn))


def _identity_connection(r: AppSettingsReader, name: str, uri: str) -> StorageSettings:
    credential = r.get(f"{name}__credential")
    client_id = r.get(f"{name}__clientId")
    uri_name = f"{name}__blobServiceUri" if r.get(f"{name}__blobServiceUri") else f"{name}__serviceUri"
    if not uri.startswith(("https://", "http://")):
        hint = (
            f" (a connection string belongs in {name} itself)"
            if re.search(
                r"(?i)accountname=|accountkey=|blobendpoint=|"
                r"sharedaccesssignature=",
                uri,
            )
            else ""
        )
        r.problems.append(f"{uri_name}: {show(uri)} must be an https:// URL{hint}")
    elif secret_shaped(uri):
        r.problems.append(
            f"{uri_name}: {show(uri)}; it must be the service URL alone "
            "(e.g. https://<account>.blob.core.windows.net), no key, "
            "SAS or password in it"
        )
    if credential is not None and credential.lower() != "managedidentity":
        r.problems.append(f"{name}__credential: {show(credential)} must be 'managedidentity'")
    return StorageSettings(name, service_uri=uri.rstrip("/"), credential=credential, client_id=client_id)


def read_database(r: AppSettingsReader) -> DatabaseSettings | None:
    host = r.get("POSTGRES_HOST")
    if host is None:
        return None
    port = r.integer("POSTGRES_PORT", 5432, minimum=1, maximum=65535)
    user = r.get("POSTGRES_USER")
    dbname = r.get("POSTGRES_DB")
    password = r.get("POSTGRES_PASSWORD")
    for name, value in (("POSTGRES_USER", user), ("POSTGRES_DB", dbname)):
        if value is None:
            r.problems.append(f"{name}: not set (required with POSTGRES_HOST)")
    is_local = host.startswith("/") or host in LOCAL_HOSTS or _is_loopback(host)
    sslmode_raw = r.get("POSTGRES_SSLMODE") or ("prefer" if is_local else "verify-full")
    sslmode = sslmode_raw.lower()
    if sslmode not in SSLMODES:  # (shown as given: lower-cased, a key no longer looks like one)
        r.problems.append(f"POSTGRES_SSLMODE: {show(sslmode_raw)} must be one of {', '.join(SSLMODES)}")
    allow_insecure = r.flag("POSTGRES_ALLOW_INSECURE", frozenset({"1", "true", "yes"}))
    if not is_local and sslmode in {"disable", "allow", "prefer"} and not allow_insecure:
        r.problems.append(
            f"POSTGRES_SSLMODE: {show(sslmode)} would allow an unencrypted connection to the "
            f"non-local host {show(host)}; use require/verify-full, or set POSTGRES_ALLOW_INSECURE=true"
        )
    auth_raw = r.get("POSTGRES_AUTH") or "password"
    auth = auth_raw.lower()
    if auth not in ("password", "entra"):  # shown as given: lower-cased, a key no longer looks like one
        r.problems.append(f"POSTGRES_AUTH: {show(auth_raw)} must be 'password' or 'entra'")
    if auth == "entra" and password is not None:
        r.problems.append(
            "POSTGRES_PASSWORD: not used with POSTGRES_AUTH=entra (the token is the password); remove it"
        )
    rootcert = _root_cert(r, host, sslmode, is_local)
    return DatabaseSettings(
        host=host,
        port=port,
        user=user or "",
        password=Secret(password) if password is not None else None,
        dbname=dbname or "",
        sslmode=sslmode,
        sslrootcert=rootcert,
        connect_timeout=r.integer("POSTGRES_CONNECT_TIMEOUT", 10, minimum=1, maximum=600),
        auth=auth,
        entra_client_id=r.get("POSTGRES_ENTRA_CLIENT_ID"),
    )


def _root_cert(r: AppSettingsReader, host: str, sslmode: str, is_local: bool) -> str | None:
    """POSTGRES_SSLROOTCERT: a CA file; "azure" (the roots shipped in the package); "system"
    (the OS trust store's file). Unset for an Azure Database for PostgreSQL host: the shipped
    roots, so that verify-full works in Azure with nothing else to deploy."""
    raw = r.get("POSTGRES_SSLROOTCERT")
    verifying = sslmode in {"verify-ca", "verify-full"}
    if raw is None:
        if verifying and is_local:
            r.problems.append(f"POSTGRES_SSLROOTCERT: required with POSTGRES_SSLMODE={sslmode}")
        if verifying and host.lower().rstrip(".").endswith(AZURE_PG_SUFFIX):
            return str(AZURE_PG_ROOTS)
        return None
    if raw.lower() == "azure":
        return str(AZURE_PG_ROOTS)
    if raw.lower() == "system":
        found = next((f for f in SYSTEM_CA_FILES if Path(f).is_file()), None)
        if found is None:
            r.problems.append(
                "POSTGRES_SSLROOTCERT: 'system' asks for the OS trust store, but none "
                f"of {', '.join(SYSTEM_CA_FILES)} exists here; give a CA file, or "
                "'azure' for Azure Database for PostgreSQL"
            )
        return found
    if not Path(raw).is_file():
        r.problems.append(f"POSTGRES_SSLROOTCERT: no file at {show(raw)}")
    return raw


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
