"""The app's settings: the only code that reads the environment (app settings in Azure,
local.settings.json under ``func start``, exported variables for the CLI).

Contract:

- ``load_settings()`` parses every setting once into a frozen ``Settings`` and fails with
  one ``ConfigError`` that names every missing or malformed setting, never only the first.
- ``read_bindings()`` reads alone what ``function_app.py`` needs at indexing: a value the
  host would refuse leaves out only the function that uses it.
- Secrets are wrapped in ``Secret`` so that no repr, log line or traceback ever shows them.
- ``Settings`` and the types of its fields (``Secret``, ``StorageSettings``,
  ``DatabaseSettings``, ``RetrySettings``) are imported from here. Its parts:
  ``config.reader`` (reading one value, the problem list, unresolved Key Vault references,
  ``Secret``) and ``config.connections`` (the storage and PostgreSQL connections, the TLS
  roots); both read only the mapping this module hands them.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from sales_etl.config import hostsettings
from sales_etl.config.connections import (
    STORAGE_CONNECTION,
    DatabaseSettings,
    StorageSettings,
    read_database,
    read_storage,
)
from sales_etl.config.hostsettings import SettingError
from sales_etl.config.hostsettings import show as _show
from sales_etl.config.reader import AppSettingsReader, Secret
from sales_etl.core.errors import ConfigError

DEFAULT_CONTAINER = "sales"
DEFAULT_SWEEP_SCHEDULE = "0 */10 * * * *"
DEFAULT_CHUNK_ROWS = 10_000

TriggerSource = Literal["LogsAndContainerScan", "EventGrid"]
_SOURCES: dict[str, TriggerSource] = {
    "polling": "LogsAndContainerScan",
    "logsandcontainerscan": "LogsAndContainerScan",
    "eventgrid": "EventGrid",
}
_PRIMARY = (
    "POSTGRES_HOST",
    STORAGE_CONNECTION,
    f"{STORAGE_CONNECTION}__blobServiceUri",
    f"{STORAGE_CONNECTION}__serviceUri",
    f"{STORAGE_CONNECTION}__queueServiceUri",
    f"AzureWebJobs{STORAGE_CONNECTION}",
    "AZ_CONNECTION_STRING",
)


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
        return replace(
            db,
            user=self.admin_user,
            password=self.admin_password,
            auth="password" if self.admin_password is not None else db.auth,
        )

    def require_keys(self) -> tuple[tuple[bytes, ...], bytes]:
        """Fernet keys (newest first) and the blind-index key, for datasets with sensitive
        columns."""
        if not self.fernet_keys:
            raise ConfigError("FERNET_KEYS: not set; sensitive columns need at least one key")
        if self.blind_index_key is None:
            raise ConfigError("BLIND_INDEX_KEY: not set; sensitive columns need a blind-index key")
        fernet = tuple(k.get().encode("ascii") for k in self.fernet_keys)
        return fernet, base64.urlsafe_b64decode(self.blind_index_key.get())


def load_settings(
    env: Mapping[str, str] | None = None, fallback: Mapping[str, str] | None = None
) -> Settings:
    """Read and validate every setting; raise ConfigError naming each bad one.

    ``fallback`` fills settings the environment does not set (the CLI passes the running
    local dev stack's settings, so that commands work right after ``make demo``)."""
    r = AppSettingsReader(app_settings(env, fallback))
    container = _container(r) or DEFAULT_CONTAINER
    settings = Settings(
        environment=r.get("ENVIRONMENT") or "local",
        container=container,
        storage=read_storage(r),
        database=read_database(r),
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
        sweep_schedule=_schedule(AppSettingsReader(r.env)),
        trigger_source=_trigger_source(AppSettingsReader(r.env)),
        datasets_dir=_directory(r, "DATASETS_DIR"),
        log_level=(r.get("LOG_LEVEL") or "INFO").upper(),
        admin_user=r.get("POSTGRES_ADMIN_USER"),
        admin_password=Secret(pw) if (pw := r.get("POSTGRES_ADMIN_PASSWORD")) else None,
        migrations_dir=_directory(r, "MIGRATIONS_DIR"),
        blind_index_key_new=_blind_key(r, "BLIND_INDEX_KEY_NEW"),
        appinsights_connection=Secret(ai) if (ai := r.get("APPLICATIONINSIGHTS_CONNECTION_STRING")) else None,
        worker_telemetry=r.flag("PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY"),
    )
    if r.problems:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(r.problems), code="settings")
    return settings


def app_settings(
    env: Mapping[str, str] | None = None, fallback: Mapping[str, str] | None = None
) -> Mapping[str, str]:
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
        out.append(
            (
                STORAGE_CONNECTION,
                True,
                f"{STORAGE_CONNECTION}: {kind} connection, "
                "read the same way by the host's trigger and the package",
            )
        )
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
    r = AppSettingsReader(source_env)
    blob_problems = len(r.problems)
    container = _container(r)  # a problem here (e.g. an unresolved reference) refuses the trigger
    source = _trigger_source(r)
    blob_ok = len(r.problems) == blob_problems and container is not None
    timer_problems = len(r.problems)
    schedule = _schedule(r)
    timer_ok = len(r.problems) == timer_problems
    return BindingSettings(
        container=container if blob_ok else None,
        source=source if blob_ok else None,
        schedule=schedule if timer_ok else None,
        problems=tuple(r.problems),
    )


def _binding_value(
    r: AppSettingsReader, setting: str, raw: str, check: Callable[[str], object]
) -> str | None:
    """``raw`` with %NAME% resolved as the host resolves it in a binding field, then checked
    as the host checks it; None (and a problem naming ``setting``) when the host would refuse it."""
    try:
        value = hostsettings.resolve(raw, r.env)
        check(value)
    except SettingError as exc:
        r.problems.append(f"{setting}: {exc}")
        return None
    return value


def _container(r: AppSettingsReader) -> str | None:
    """SALES_CONTAINER with %NAME% resolved as the host resolves it in the binding path."""
    raw = r.get("SALES_CONTAINER", "AZ_CONTAINER_NAME") or DEFAULT_CONTAINER
    return _binding_value(r, "SALES_CONTAINER", raw, hostsettings.check_container)


def _trigger_source(r: AppSettingsReader) -> TriggerSource:
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


def _fernet_keys(r: AppSettingsReader) -> tuple[Secret, ...]:
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


def _blind_key(r: AppSettingsReader, name: str = "BLIND_INDEX_KEY") -> Secret | None:
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


def _chunk_rows(r: AppSettingsReader) -> int:
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


def _schedule(r: AppSettingsReader) -> str:
    """SWEEP_SCHEDULE as the host accepts it: NCRONTAB with 6 or 5 fields, or a TimeSpan
    (dedicated plans), after %NAME% resolution."""
    raw = r.get("SWEEP_SCHEDULE") or DEFAULT_SWEEP_SCHEDULE
    return _binding_value(r, "SWEEP_SCHEDULE", raw, hostsettings.schedule_kind) or raw


def _directory(r: AppSettingsReader, name: str) -> Path | None:
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
    return Path(override) if override else Path(__file__).resolve().parents[2]
