"""The only module that reads the environment (app settings in Azure, local.settings.json
under ``func start``, exported variables for the CLI).

``load_settings()`` parses every setting once into a frozen ``Settings`` object and fails
with one ``ConfigError`` that names every missing or malformed setting. Secrets are wrapped
in ``Secret`` so that no repr, log line or traceback ever shows them.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from . import hostsettings
from .errors import ConfigError
from .hostsettings import SettingError
from .hostsettings import secret_shaped as _secret_shaped
from .hostsettings import show as _show

STORAGE_CONNECTION = "SalesStorage"  # the app-setting *name* shared by trigger and clients
DEFAULT_CONTAINER = "sales"
DEFAULT_SWEEP_SCHEDULE = "0 */10 * * * *"
DEFAULT_CHUNK_ROWS = 10_000
LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1"}

TriggerSource = Literal["LogsAndContainerScan", "EventGrid"]
_SOURCES: dict[str, TriggerSource] = {
    "polling": "LogsAndContainerScan",
    "logsandcontainerscan": "LogsAndContainerScan",
    "eventgrid": "EventGrid",
}
_PRIMARY = ("POSTGRES_HOST", STORAGE_CONNECTION, f"{STORAGE_CONNECTION}__blobServiceUri",
            f"{STORAGE_CONNECTION}__serviceUri", f"{STORAGE_CONNECTION}__queueServiceUri",
            f"AzureWebJobs{STORAGE_CONNECTION}", "AZ_CONNECTION_STRING")
_SSLMODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# The public roots Azure Database for PostgreSQL chains to, shipped inside the package
# (sales_etl/certs/): the CA file when POSTGRES_SSLROOTCERT is unset for an Azure host, or "azure".
AZURE_PG_ROOTS = Path(__file__).resolve().parent / "certs" / "azure-postgres-roots.pem"
AZURE_PG_SUFFIX = ".postgres.database.azure.com"
# Where Debian/Ubuntu (the Functions Linux images) and RHEL-likes keep the OS trust store. libpq's
# own sslrootcert=system would ask the OpenSSL bundled in psycopg2-binary, whose store directory
# is a path of its build machine: "system" is resolved to one of these files instead.
SYSTEM_CA_FILES = ("/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt")
# An app setting whose value still is a reference: App Service could not resolve it.
_UNRESOLVED_REFERENCES = {"@microsoft.keyvault(": "Key Vault",
                          "@microsoft.appconfiguration(": "App Configuration"}


class Secret:
    """A string that never shows itself in repr, str or f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


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
            from .identity import database_token

            kwargs["password"] = database_token(self.entra_client_id)
        elif self.password is not None:
            kwargs["password"] = self.password.get()
        return kwargs

    def describe(self) -> str:
        """A safe one-line description for logs (no password)."""
        tls = "unix socket" if self.host.startswith("/") else f"sslmode={self.sslmode}"
        return f"{self.user}@{self.host}:{self.port}/{self.dbname} ({tls})"


@dataclass(frozen=True)
class RetrySettings:
    max_attempts: int = 5
    base_seconds: int = 60
    max_seconds: int = 6 * 3600


@dataclass(frozen=True)
class Settings:
    environment: str = "local"
    container: str = DEFAULT_CONTAINER
    storage: StorageSettings | None = None
    database: DatabaseSettings | None = None
    fernet_keys: tuple[Secret, ...] = ()
    blind_index_key: Secret | None = None
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    retry: RetrySettings = field(default_factory=RetrySettings)
    sweep_schedule: str = DEFAULT_SWEEP_SCHEDULE
    trigger_source: TriggerSource = "LogsAndContainerScan"
    datasets_dir: Path | None = None
    log_level: str = "INFO"
    admin_user: str | None = None
    admin_password: Secret | None = None
    migrations_dir: Path | None = None
    blind_index_key_new: Secret | None = None
    appinsights_connection: Secret | None = None
    worker_telemetry: bool = False  # PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY: the worker exports

    def require_storage(self) -> StorageSettings:
        if self.storage is None:
            raise ConfigError(
                f"{STORAGE_CONNECTION}: not set; give a storage connection string, or "
                f"{STORAGE_CONNECTION}__blobServiceUri and {STORAGE_CONNECTION}__queueServiceUri "
                "for an identity-based connection"
            )
        return self.storage

    def require_database(self) -> DatabaseSettings:
        if self.database is None:
            raise ConfigError("POSTGRES_HOST: not set; the database connection is required")
        return self.database

    def require_admin_database(self) -> DatabaseSettings:
        """The schema owner's connection (migrations, operators' maintenance): the admin
        user when POSTGRES_ADMIN_USER is set, else the loader's own."""
        db = self.require_database()
        if self.admin_user is None:
            return db
        return replace(db, user=self.admin_user, password=self.admin_password,
                       auth="password" if self.admin_password is not None else db.auth)

    def require_keys(self) -> tuple[tuple[bytes, ...], bytes]:
        """Fernet keys (newest first) and the blind-index key, for datasets with sensitive
        columns."""
        if not self.fernet_keys:
            raise ConfigError("FERNET_KEYS: not set; sensitive columns need at least one key")
        if self.blind_index_key is None:
            raise ConfigError("BLIND_INDEX_KEY: not set; sensitive columns need a blind-index key")
        fernet = tuple(k.get().encode("ascii") for k in self.fernet_keys)
        return fernet, base64.urlsafe_b64decode(self.blind_index_key.get())


class _Reader:
    """Collects every problem so that one error lists them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def get(self, *names: str) -> str | None:
        for name in names:
            value = self.env.get(name)
            if value is not None and value.strip() != "":
                if _unresolved_reference(name, value.strip(), self.problems):
                    return None
                return value.strip()
        return None

    def integer(self, name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
        raw = self.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problems.append(f"{name}: {_show(raw)} is not a whole number")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            upper = f" and {maximum}" if maximum is not None else ""
            self.problems.append(f"{name}: {value} must be between {minimum}{upper}")
            return default
        return value


def _unresolved_reference(name: str, value: str, problems: list[str]) -> bool:
    """An ``@Microsoft.KeyVault(...)`` value reaches the app only when App Service could not
    resolve it; say exactly that (and not, e.g., "not a Fernet key"). The value is not echoed."""
    lowered = value.lower()
    for prefix, service in _UNRESOLVED_REFERENCES.items():
        if lowered.startswith(prefix):
            hint = (" Check that keyVaultReferenceIdentity names the app's user-assigned identity, "
                    "that this identity has the 'Key Vault Secrets User' role on the vault, and "
                    "that the vault is reachable from the app (docs/operations.md, Key Vault "
                    "references)") if service == "Key Vault" else ""
            problems.append(f"{name}: is an unresolved {service} reference: the platform could not "
                            f"fetch the value, so the app received the reference text itself.{hint}")
            return True
    return False


def load_settings(env: Mapping[str, str] | None = None,
                  fallback: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every setting; raise ConfigError naming each bad one.

    ``fallback`` fills settings the environment does not set (the CLI passes the running
    local dev stack's settings, so that commands work right after ``make demo``)."""
    r = _Reader(app_settings(env, fallback))
    container = _container(r) or DEFAULT_CONTAINER
    settings = Settings(
        environment=r.get("ENVIRONMENT") or "local",
        container=container,
        storage=_storage(r),
        database=_database(r),
        fernet_keys=_fernet_keys(r),
        blind_index_key=_blind_key(r),
        chunk_rows=_chunk_rows(r),
        retry=RetrySettings(
            max_attempts=r.integer("RETRY_MAX_ATTEMPTS", 5, minimum=1, maximum=100),
            base_seconds=r.integer("RETRY_BASE_SECONDS", 60, minimum=0),
            max_seconds=r.integer("RETRY_MAX_SECONDS", 6 * 3600, minimum=0),
        ),
        # binding-only settings: a refused value leaves out its own function at indexing
        # (read_bindings, doctor's "function bindings"); it must not fail the other one
        sweep_schedule=_schedule(_Reader(r.env)),
        trigger_source=_trigger_source(_Reader(r.env)),
        datasets_dir=_directory(r, "DATASETS_DIR"),
        log_level=(r.get("LOG_LEVEL") or "INFO").upper(),
        admin_user=r.get("POSTGRES_ADMIN_USER"),
        admin_password=Secret(pw) if (pw := r.get("POSTGRES_ADMIN_PASSWORD")) else None,
        migrations_dir=_directory(r, "MIGRATIONS_DIR"),
        blind_index_key_new=_blind_key(r, "BLIND_INDEX_KEY_NEW"),
        appinsights_connection=Secret(ai) if (ai := r.get(
            "APPLICATIONINSIGHTS_CONNECTION_STRING")) else None,
        worker_telemetry=(r.get("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY") or "").lower()
        in {"1", "true"},
    )
    if r.problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(r.problems), code="settings")
    return settings


def app_settings(env: Mapping[str, str] | None = None,
                 fallback: Mapping[str, str] | None = None) -> Mapping[str, str]:
    """The app settings in force: ``env`` (default: the environment), or, when it configures
    neither storage nor database, ``fallback`` under it (the running dev stack's)."""
    source = os.environ if env is None else env
    configured = any(source.get(k) for k in _PRIMARY)
    return {**fallback, **source} if fallback and not configured else source


def host_connections(env: Mapping[str, str] | None = None) -> list[tuple[str, bool, str]]:
    """(setting, ok, detail): the trigger's connection exactly as the host and the worker's
    blob extension resolve it, and AzureWebJobsStorage, which the host itself needs."""
    source = os.environ if env is None else env
    out: list[tuple[str, bool, str]] = []
    try:
        kind, _ = hostsettings.trigger_connection(STORAGE_CONNECTION, source)
        out.append((STORAGE_CONNECTION, True, f"{STORAGE_CONNECTION}: {kind} connection, "
                    "read the same way by the host's trigger and the package"))
    except SettingError as exc:
        out.append((STORAGE_CONNECTION, False, f"{STORAGE_CONNECTION}: {exc}"))
    try:
        kind = hostsettings.host_storage(source)
        out.append(("AzureWebJobsStorage", True, f"AzureWebJobsStorage: {kind} connection"))
    except SettingError as exc:
        out.append(("AzureWebJobsStorage", False, f"AzureWebJobsStorage: {exc}"))
    return out


@dataclass(frozen=True)
class BindingSettings:
    """What function_app.py needs at indexing time, read alone so that nothing else (a
    missing database setting, a broken dataset) can stop the host indexing. A value the
    host would refuse disables only the function that uses it: ``container``/``source``
    are None when the blob trigger cannot be bound, ``schedule`` when the timer cannot;
    ``problems`` names each setting and why."""

    container: str | None
    source: TriggerSource | None
    schedule: str | None
    connection: str = STORAGE_CONNECTION
    problems: tuple[str, ...] = ()


def read_bindings(env: Mapping[str, str] | None = None) -> BindingSettings:
    source_env = os.environ if env is None else env
    r = _Reader(source_env)
    blob_problems = len(r.problems)
    container = _container(r)  # a problem here (e.g. an unresolved reference) refuses the trigger
    source = _trigger_source(r)
    blob_ok = len(r.problems) == blob_problems and container is not None
    timer_problems = len(r.problems)
    schedule = _schedule(r)
    timer_ok = len(r.problems) == timer_problems
    return BindingSettings(container=container if blob_ok else None,
                           source=source if blob_ok else None,
                           schedule=schedule if timer_ok else None,
                           problems=tuple(r.problems))


def _container(r: _Reader) -> str | None:
    """SALES_CONTAINER with %NAME% resolved as the host resolves it in the binding path."""
    raw = r.get("SALES_CONTAINER", "AZ_CONTAINER_NAME") or DEFAULT_CONTAINER
    try:
        container = hostsettings.resolve(raw, r.env)
        hostsettings.check_container(container)
    except SettingError as exc:
        r.problems.append(f"SALES_CONTAINER: {exc}")
        return None
    return container


def _trigger_source(r: _Reader) -> TriggerSource:
    raw = r.get("SALES_TRIGGER_SOURCE") or "polling"
    try:
        raw = hostsettings.resolve(raw, r.env)
    except SettingError as exc:
        r.problems.append(f"SALES_TRIGGER_SOURCE: {exc}")
        return "LogsAndContainerScan"
    source = _SOURCES.get(raw.lower())
    if source is None:
        r.problems.append(f"SALES_TRIGGER_SOURCE: {_show(raw)} must be 'polling' or 'eventgrid'")
        return "LogsAndContainerScan"
    return source


def _storage(r: _Reader) -> StorageSettings | None:
    """The trigger's connection, resolved as the host and the worker's blob extension
    resolve it (hostsettings.trigger_connection): the package's clients use the same one."""
    name = STORAGE_CONNECTION
    if r.get("AZ_CONNECTION_STRING") is not None and r.get(name) is None:
        r.problems.append(f"AZ_CONNECTION_STRING: no longer read (the blob trigger cannot use "
                          f"it); set {name} to the same connection string")
    present = [k for k in r.env if k == name or k.startswith(f"{name}__")
               or k == f"AzureWebJobs{name}"]
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
    conn = value if kind == "string" else None
    uri = value if kind == "identity" else None
    credential = r.get(f"{name}__credential")
    client_id = r.get(f"{name}__clientId")
    if conn is not None:
        parts = dict(
            p.split("=", 1) for p in conn.split(";") if "=" in p
        )
        if not ({"AccountName", "BlobEndpoint"} & parts.keys()) and "UseDevelopmentStorage" not in conn:
            r.problems.append(f"{name}: not a storage connection string (no AccountName, BlobEndpoint)")
        return StorageSettings(name, connection_string=Secret(conn))
    if uri is not None:
        uri_name = (f"{name}__blobServiceUri" if r.get(f"{name}__blobServiceUri")
                    else f"{name}__serviceUri")
        if not uri.startswith(("https://", "http://")):
            hint = (f" (a connection string belongs in {name} itself)"
                    if re.search(r"(?i)accountname=|accountkey=|blobendpoint=|"
                                 r"sharedaccesssignature=", uri) else "")
            r.problems.append(f"{uri_name}: {_show(uri)} must be an https:// URL{hint}")
        elif _secret_shaped(uri):
            r.problems.append(f"{uri_name}: {_show(uri)}; it must be the service URL alone "
                              "(e.g. https://<account>.blob.core.windows.net), no key, "
                              "SAS or password in it")
        if credential is not None and credential.lower() != "managedidentity":
            r.problems.append(f"{name}__credential: {_show(credential)} must be "
                              "'managedidentity'")
        if incomplete:
            return None
        return StorageSettings(name, service_uri=uri.rstrip("/"), credential=credential,
                               client_id=client_id)
    return None


def _database(r: _Reader) -> DatabaseSettings | None:
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
    if sslmode not in _SSLMODES:  # (shown as given: lower-cased, a key no longer looks like one)
        r.problems.append(
            f"POSTGRES_SSLMODE: {_show(sslmode_raw)} must be one of {', '.join(_SSLMODES)}")
    allow_insecure = (r.get("POSTGRES_ALLOW_INSECURE") or "false").lower() in {"1", "true", "yes"}
    if not is_local and sslmode in {"disable", "allow", "prefer"} and not allow_insecure:
        r.problems.append(
            f"POSTGRES_SSLMODE: {_show(sslmode)} would allow an unencrypted connection to the "
            f"non-local host {_show(host)}; use require/verify-full, or set POSTGRES_ALLOW_INSECURE=true"
        )
    auth = (r.get("POSTGRES_AUTH") or "password").lower()
    if auth not in ("password", "entra"):
        r.problems.append(f"POSTGRES_AUTH: {_show(auth)} must be 'password' or 'entra'")
    if auth == "entra" and password is not None:
        r.problems.append("POSTGRES_PASSWORD: not used with POSTGRES_AUTH=entra (the token is "
                          "the password); remove it")
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


def _root_cert(r: _Reader, host: str, sslmode: str, is_local: bool) -> str | None:
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
            r.problems.append("POSTGRES_SSLROOTCERT: 'system' asks for the OS trust store, but none "
                              f"of {', '.join(SYSTEM_CA_FILES)} exists here; give a CA file, or "
                              "'azure' for Azure Database for PostgreSQL")
        return found
    if not Path(raw).is_file():
        r.problems.append(f"POSTGRES_SSLROOTCERT: no file at {_show(raw)}")
    return raw


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _fernet_keys(r: _Reader) -> tuple[Secret, ...]:
    raw = r.get("FERNET_KEYS", "FERNET_KEY")
    if raw is None:
        return ()
    keys = tuple(k.strip() for k in raw.split(",") if k.strip())
    for position, key in enumerate(keys, start=1):
        if not _is_b64_key(key, exact=32):
            r.problems.append(
                f"FERNET_KEYS: key #{position} is not a Fernet key "
                "(url-safe base64 of 32 bytes, e.g. from `sales-etl keys generate`)"
            )
    return tuple(Secret(k) for k in keys)


def _blind_key(r: _Reader, name: str = "BLIND_INDEX_KEY") -> Secret | None:
    raw = r.get(name)
    if raw is None:
        return None
    if not _is_b64_key(raw, minimum=32):
        r.problems.append(f"{name}: must be url-safe base64 of at least 32 random bytes")
    return Secret(raw)


def _is_b64_key(value: str, *, exact: int | None = None, minimum: int = 0) -> bool:
    try:
        decoded = base64.urlsafe_b64decode(value.encode("ascii"))
    except (binascii.Error, ValueError, UnicodeEncodeError):
        return False
    return len(decoded) == exact if exact is not None else len(decoded) >= minimum


def _chunk_rows(r: _Reader) -> int:
    if r.get("CHUNK_SIZE") is not None:
        return r.integer("CHUNK_SIZE", DEFAULT_CHUNK_ROWS, minimum=100, maximum=5_000_000)
    fraction_raw = r.get("DESIRED_CHUNK_FRACTION")
    if fraction_raw is None:
        return DEFAULT_CHUNK_ROWS
    try:
        fraction = float(fraction_raw)
        if not 0 < fraction <= 1:
            raise ValueError
    except ValueError:
        r.problems.append(f"DESIRED_CHUNK_FRACTION: {_show(fraction_raw)} must be a number in (0, 1]")
        return DEFAULT_CHUNK_ROWS
    row_bytes = r.integer("AVG_ROW_SIZE_BYTES", 1024, minimum=16)
    available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    # Bounded above so that memory stays flat whatever the machine's size.
    return max(1000, min(500_000, int(available * fraction / row_bytes)))


def _schedule(r: _Reader) -> str:
    """SWEEP_SCHEDULE as the host accepts it: NCRONTAB with 6 or 5 fields, or a TimeSpan
    (dedicated plans), after %NAME% resolution."""
    raw = r.get("SWEEP_SCHEDULE") or DEFAULT_SWEEP_SCHEDULE
    try:
        schedule = hostsettings.resolve(raw, r.env)
        hostsettings.schedule_kind(schedule)
    except SettingError as exc:
        r.problems.append(f"SWEEP_SCHEDULE: {exc}")
        return raw
    return schedule


def _directory(r: _Reader, name: str) -> Path | None:
    raw = r.get(name)
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_dir():
        r.problems.append(f"{name}: {_show(raw)} is not a directory")
    return path


def project_root() -> Path:
    """The checkout's root (where the dev stack keeps its state)."""
    override = os.environ.get("SALES_ETL_HOME")
    return Path(override) if override else Path(__file__).resolve().parent.parent
