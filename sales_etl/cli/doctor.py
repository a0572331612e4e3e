"""``sales-etl doctor``: is this deployment healthy? Each check says pass or fail and, when
it fails, how to fix it. Read-only: it changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sales_etl.config.settings import (
    STORAGE_CONNECTION,
    Settings,
    app_settings,
    host_connections,
    load_settings,
    read_bindings,
)
from sales_etl.core.errors import ConfigError, EtlError, classify


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run(
    env: Mapping[str, str] | None = None, fallback: Mapping[str, str] | None = None, missing_hint: str = ""
) -> list[Check]:
    """Every check; ``missing_hint`` says how to get settings when storage or database
    settings are missing (the CLI passes how to start the local stack)."""
    try:
        settings = load_settings(env, fallback=fallback)
    except ConfigError as exc:
        return [
            Check(
                "settings",
                False,
                " ".join(exc.message.split()),
                "set or correct the settings named (docs/settings.md)",
            )
        ]
    checks = [_settings_check(settings, missing_hint)]
    host = _host_checks(app_settings(env, fallback))
    if settings.storage is None:  # the connection checks could only repeat "not set"
        host = [c for c in host if c.name == "function bindings"]
    checks.extend(host)
    probes: list[Callable[[Settings], list[Check]]] = []
    if settings.storage is not None:  # without settings, a probe could only say "not set"
        probes.append(_storage)
    if settings.database is not None:
        probes.extend((_database, _connections, _tls, _migrations, _keys, _datasets))
    for probe in probes:
        try:
            checks.extend(probe(settings))
        except Exception as exc:
            error = exc if isinstance(exc, EtlError) else classify(exc)
            checks.append(
                Check(probe.__name__.strip("_"), False, " ".join(error.message.split()), _fix_for(error))
            )
            if probe is _database:
                break  # the checks after it need the database: one failure says it
    return checks


def _fix_for(error: EtlError) -> str:
    if error.code in ("db_unreachable", "db_transient"):
        return (
            "check POSTGRES_HOST / POSTGRES_PORT and that the server runs (locally: "
            "sales-etl dev up, then export its settings again)"
        )
    if error.code in ("storage_transient", "storage_unreachable", "io_transient"):
        return "check SalesStorage and that the storage account (locally: Azurite) is reachable"
    if error.code == "no_migrations":
        return (
            "run doctor (and migrate) from the checkout's command line (`pip install -e .`), "
            "or set SALES_ETL_HOME to the checkout"
        )
    if error.code == "settings" or isinstance(error, ConfigError):
        return "set the setting named (docs/settings.md)"
    return "fix the failure named; the other checks' fixes may come first"


def _settings_check(settings: Settings, missing_hint: str = "") -> Check:
    present = []
    if settings.storage is not None:
        present.append("storage (identity)" if settings.storage.uses_identity else "storage")
    if settings.database is not None:
        present.append("database")
    if settings.fernet_keys:
        present.append(f"{len(settings.fernet_keys)} Fernet key(s)")
    if settings.blind_index_key is not None:
        present.append("blind-index key")
    missing = [
        n
        for n, v in ((STORAGE_CONNECTION, settings.storage), ("POSTGRES_HOST", settings.database))
        if v is None
    ]
    return Check(
        "settings",
        not missing,
        f"well-formed; set: {', '.join(present) or 'nothing'}"
        + (f"; missing: {', '.join(missing)}" if missing else ""),
        (missing_hint or "export the missing settings (docs/settings.md)") if missing else "",
    )


def _host_checks(env: Mapping[str, str]) -> list[Check]:
    """What the host reads: the bindings at indexing, the trigger's connection as the host
    and the worker's blob extension resolve it, and AzureWebJobsStorage."""
    b = read_bindings(env)
    detail = (
        (f"blob trigger {b.container}/incoming/{{name}} via {b.connection} ({b.source}); sweep {b.schedule}")
        if not b.problems
        else "; ".join(b.problems)
    )
    checks = [
        Check(
            "function bindings",
            not b.problems,
            detail,
            "" if not b.problems else "correct the settings named (docs/settings.md)",
        )
    ]
    for name, ok, text in host_connections(env):
        checks.append(
            Check(
                "trigger connection" if name == STORAGE_CONNECTION else "host storage",
                ok,
                text,
                "" if ok else f"set {name} (docs/settings.md)",
            )
        )
    return checks


def _storage(settings: Settings) -> list[Check]:
    from sales_etl.storage import container as storage
    from sales_etl.storage.preflight import check_storage

    check_storage(settings.require_storage())
    cc = storage.container_client(settings)
    if not cc.exists():
        return [
            Check(
                "storage",
                False,
                f"container {settings.container!r} does not exist",
                "sales-etl init-storage (or create the container)",
            )
        ]
    counts = {folder: 0 for folder in (storage.INCOMING, storage.FAILED, storage.DEADLETTER)}
    for folder in counts:
        for _ in cc.list_blobs(name_starts_with=f"{folder}/"):
            counts[folder] += 1
            if counts[folder] >= 1000:
                break
    detail = ", ".join(f"{k}/: {v}{'+' if v >= 1000 else ''}" for k, v in counts.items())
    return [
        Check("storage", True, f"container {settings.container!r} reachable; {detail}"),
        Check(
            "dead letters",
            counts[storage.DEADLETTER] == 0,
            f"{counts[storage.DEADLETTER]} blob(s) in deadletter/",
            "read their reason (sales-etl runs, or the blob's metadata), fix the cause, "
            "then: sales-etl requeue --all --from deadletter"
            if counts[storage.DEADLETTER]
            else "",
        ),
    ]


def _database(settings: Settings) -> list[Check]:
    from sales_etl.db.probes import server_version

    version = server_version(settings.require_database())
    return [Check("database", True, f"PostgreSQL {version} at {settings.require_database().describe()}")]


def _connections(settings: Settings) -> list[Check]:
    """The server's connection limit, what is in use, and whether a pooler is in front."""
    from sales_etl.db.connection import pooler
    from sales_etl.db.probes import connection_usage

    db = settings.require_database()
    via = pooler(db)
    limit, reserved, in_use = connection_usage(db)
    usable = limit - reserved
    ok = usable - in_use > max(2, usable // 10)  # room for more than one invocation
    checks = [
        Check(
            "connections",
            ok,
            f"{in_use} in use of max_connections {limit} ({reserved} reserved for superusers,"
            f" {max(0, usable - in_use)} free for the loader)",
            ""
            if ok
            else "the server is near its connection limit: put PgBouncer in front (Azure: port "
            "6432), lower maximumInstanceCount or the per-instance blob concurrency, or raise "
            "max_connections (docs/scale-out.md)",
        )
    ]
    if via is not None:
        checks.append(
            Check(
                "pooler",
                True,
                f"PgBouncer at {db.host}:{db.port}: {via}; transaction pooling "
                "is fine for loading (no session state); run sales-etl migrate against the "
                "server's own port",
            )
        )
    else:
        checks.append(
            Check(
                "pooler",
                True,
                "direct to PostgreSQL, no pooler: every running invocation "
                "holds one server connection (on Azure, port 6432 is the built-in PgBouncer)",
            )
        )
    return checks


def _tls(settings: Settings) -> list[Check]:
    db = settings.require_database()
    if db.host.startswith("/"):
        return [Check("TLS", True, "unix socket: no network, TLS not needed")]
    from sales_etl.db.probes import client_tls

    ssl = client_tls(db)
    verified = db.sslmode == "verify-full"
    ok = bool(ssl[0]) and (verified or db.is_local)
    detail = (
        f"encrypted ({ssl[1]}), sslmode={db.sslmode}" if ssl[0] else f"NOT encrypted, sslmode={db.sslmode}"
    )
    return [
        Check(
            "TLS",
            ok and verified,
            detail,
            ""
            if ok and verified
            else "set POSTGRES_SSLMODE=verify-full and POSTGRES_SSLROOTCERT to the server's CA",
        )
    ]


def _migrations(settings: Settings) -> list[Check]:
    from sales_etl.db.migrate import pending

    folders = [None, *([settings.migrations_dir] if settings.migrations_dir else [])]
    waiting = [m for folder in folders for m in pending(settings.require_admin_database(), folder)]
    names = ", ".join(f"V{m.version}" for m in waiting)
    return [
        Check(
            "migrations",
            not waiting,
            "up to date" if not waiting else f"pending: {names}",
            "sales-etl migrate" if waiting else "",
        )
    ]


def _keys(settings: Settings) -> list[Check]:
    from sales_etl.datasets.reader import scan_datasets
    from sales_etl.db.probes import newest_tokens
    from sales_etl.stages.protect import Protector

    fernet, blind = settings.require_keys()
    protector = Protector(fernet, blind)
    stale, wrong_hash, undecryptable, sampled = [], [], [], 0
    undecryptable_all: list[str] = []  # one entry per value (the other lists are per column)
    for ds in scan_datasets(settings.datasets_dir)[0].values():  # the datasets check names
        for col in ds.sensitive:  # a broken file
            for token, digest in newest_tokens(settings.require_database(), ds, col):
                if token is None:
                    continue
                sampled += 1
                where = f"{ds.table}.{col.sql[0]}"
                try:
                    plain = protector.decrypt(token)
                except ValueError:
                    undecryptable.append(where)
                    undecryptable_all.append(where)
                    continue
                if not protector.is_current(token):
                    stale.append(where)
                if protector.hash(plain) != bytes(digest):
                    wrong_hash.append(where)
    stale, wrong_hash = sorted(set(stale)), sorted(set(wrong_hash))
    undecryptable = sorted(set(undecryptable))
    if undecryptable:
        key_check = Check(
            "encryption keys",
            False,
            f"{len(fernet)} key(s); {sampled} recent values sampled; "
            f"values that decrypt with none of them: {', '.join(undecryptable)}",
            "FERNET_KEYS lacks the key these values were encrypted with: add it (after the "
            "newest); only then can rotate-keys re-encrypt them",
        )
    else:
        key_check = Check(
            "encryption keys",
            not stale,
            f"{len(fernet)} key(s); {sampled} recent values "
            "sampled"
            + (f"; not under the newest key: {', '.join(stale)}" if stale else ", all under the newest key"),
            "sales-etl rotate-keys (then drop the old key)" if stale else "",
        )
    return [
        key_check,
        Check(
            "blind-index key",
            not wrong_hash,
            (
                "nothing to compare: no sampled value decrypts"
                if sampled and sampled == len(undecryptable_all)
                else "stored hashes match BLIND_INDEX_KEY"
            )
            if not wrong_hash
            else f"hashes do not match: {', '.join(wrong_hash)}",
            "BLIND_INDEX_KEY differs from the key the rows were hashed with: set the right "
            "key, or finish rotate-keys --blind-index"
            if wrong_hash
            else "",
        ),
    ]


def _datasets(settings: Settings) -> list[Check]:
    from sales_etl.datasets.reader import scan_datasets
    from sales_etl.db.dbcheck import check

    good, broken = scan_datasets(settings.datasets_dir)  # a broken file hides no other
    results = check(settings.require_database(), list(good.values())) if good else {}
    results.update({name: [error] for name, error in broken.items()})
    problems = [f"{name}: {p}" for name, ps in sorted(results.items()) for p in ps]
    return [
        Check(
            "datasets",
            not problems,
            f"{len(results)} dataset(s) match their tables" if not problems else "; ".join(problems),
            "sales-etl migrate, or correct the dataset file" if problems else "",
        )
    ]
