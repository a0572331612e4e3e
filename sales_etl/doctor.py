"""``sales-etl doctor``: is this deployment healthy? Each check says pass or fail and, when
it fails, how to fix it. Read-only: it changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError, EtlError, classify
from .settings import STORAGE_CONNECTION, Settings, load_settings


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def run(env: Mapping[str, str] | None = None, fallback: Mapping[str, str] | None = None
        ) -> list[Check]:
    try:
        settings = load_settings(env, fallback=fallback)
    except ConfigError as exc:
        return [Check("settings", False, exc.message.replace("\n", " "),
                      "set or correct the settings named (README: Settings)")]
    checks = [_settings_check(settings)]
    for probe in (_bindings, _storage, _database, _connections, _tls, _migrations, _keys,
                      _datasets):
        try:
            checks.extend(probe(settings))
        except Exception as exc:
            error = exc if isinstance(exc, EtlError) else classify(exc)
            checks.append(Check(probe.__name__.strip("_"), False, error.message,
                                "see the error; run the other checks' fixes first"))
    return checks


def _settings_check(settings: Settings) -> Check:
    present = []
    if settings.storage is not None:
        present.append("storage (identity)" if settings.storage.uses_identity else "storage")
    if settings.database is not None:
        present.append("database")
    if settings.fernet_keys:
        present.append(f"{len(settings.fernet_keys)} Fernet key(s)")
    if settings.blind_index_key is not None:
        present.append("blind-index key")
    missing = [n for n, v in ((STORAGE_CONNECTION, settings.storage),
                              ("POSTGRES_HOST", settings.database)) if v is None]
    return Check("settings", not missing,
                 f"well-formed; set: {', '.join(present) or 'nothing'}"
                 + (f"; missing: {', '.join(missing)}" if missing else ""),
                 "set the missing settings (README: Settings)" if missing else "")


def _bindings(settings: Settings) -> list[Check]:
    from .functions import bindings

    b = bindings()
    ok = (b.blob_path == f"{settings.container}/incoming/{{name}}"
          and b.connection == STORAGE_CONNECTION and len(b.schedule.split()) == 6)
    return [Check("function bindings", ok,
                  f"blob trigger {b.blob_path} via {b.connection} ({b.source}); sweep {b.schedule}",
                  "" if ok else "SALES_CONTAINER, SWEEP_SCHEDULE and the trigger disagree")]


def _storage(settings: Settings) -> list[Check]:
    from . import storage

    cc = storage.container_client(settings)
    if not cc.exists():
        return [Check("storage", False, f"container {settings.container!r} does not exist",
                      "sales-etl init-storage (or create the container)")]
    counts = {folder: 0 for folder in (storage.INCOMING, storage.FAILED, storage.DEADLETTER)}
    for folder in counts:
        for _ in cc.list_blobs(name_starts_with=f"{folder}/"):
            counts[folder] += 1
            if counts[folder] >= 1000:
                break
    detail = ", ".join(f"{k}/: {v}{'+' if v >= 1000 else ''}" for k, v in counts.items())
    return [Check("storage", True, f"container {settings.container!r} reachable; {detail}"),
            Check("dead letters", counts[storage.DEADLETTER] == 0,
                  f"{counts[storage.DEADLETTER]} blob(s) in deadletter/",
                  "read their metadata (reason), fix, then move them back to incoming/"
                  if counts[storage.DEADLETTER] else "")]


def _with_db(settings: Settings, fn: Callable[[Any], Any]) -> Any:
    from .db import connect

    conn = connect(settings.require_database())
    try:
        with conn.cursor() as cur:
            return fn(cur)
    finally:
        conn.close()


def _database(settings: Settings) -> list[Check]:
    version = _with_db(settings, lambda cur: (cur.execute("SHOW server_version"),
                                              cur.fetchone()[0])[1])
    return [Check("database", True, f"PostgreSQL {version} at "
                  f"{settings.require_database().describe()}")]


def _connections(settings: Settings) -> list[Check]:
    """The server's connection limit, what is in use, and whether a pooler is in front."""
    from .db import pooler

    db = settings.require_database()
    via = pooler(db)

    def usage(cur: Any) -> tuple[int, int, int]:
        cur.execute("SELECT current_setting('max_connections')::int,"
                    " current_setting('superuser_reserved_connections')::int,"
                    " (SELECT count(*) FROM pg_stat_activity"
                    "  WHERE backend_type = 'client backend')::int")
        limit, reserved, in_use = cur.fetchone()
        return int(limit), int(reserved), int(in_use)

    limit, reserved, in_use = _with_db(settings, usage)
    usable = limit - reserved
    ok = usable - in_use > max(2, usable // 10)  # room for more than one invocation
    checks = [Check(
        "connections", ok,
        f"{in_use} in use of max_connections {limit} ({reserved} reserved for superusers,"
        f" {max(0, usable - in_use)} free for the loader)", "" if ok else
        "the server is near its connection limit: put PgBouncer in front (Azure: port "
        "6432), lower maximumInstanceCount or the per-instance blob concurrency, or raise "
        "max_connections (README: Scale-out)")]
    if via is not None:
        checks.append(Check(
            "pooler", True, f"PgBouncer at {db.host}:{db.port}: {via}; transaction pooling "
            "is fine for loading (no session state); run sales-etl migrate against the "
            "server's own port"))
    else:
        checks.append(Check(
            "pooler", True, "direct to PostgreSQL, no pooler: every running invocation "
            "holds one server connection (on Azure, port 6432 is the built-in PgBouncer)"))
    return checks


def _tls(settings: Settings) -> list[Check]:
    db = settings.require_database()
    if db.host.startswith("/"):
        return [Check("TLS", True, "unix socket: no network, TLS not needed")]
    # This client's own hop, as libpq sees it (through a pooler, the server-side view of
    # the session would describe the pooler's connection instead).
    ssl = _with_db(settings, lambda cur: (cur.connection.info.ssl_in_use,
                                          cur.connection.info.ssl_attribute("protocol")))
    verified = db.sslmode == "verify-full"
    ok = bool(ssl[0]) and (verified or db.is_local)
    detail = (f"encrypted ({ssl[1]}), sslmode={db.sslmode}" if ssl[0]
              else f"NOT encrypted, sslmode={db.sslmode}")
    return [Check("TLS", ok and verified, detail, "" if ok and verified else
                  "set POSTGRES_SSLMODE=verify-full and POSTGRES_SSLROOTCERT to the server's CA")]


def _migrations(settings: Settings) -> list[Check]:
    from .migrate import pending

    folders = [None, *([settings.migrations_dir] if settings.migrations_dir else [])]
    waiting = [m for folder in folders for m in pending(settings.require_admin_database(), folder)]
    names = ", ".join(f"V{m.version}" for m in waiting)
    return [Check("migrations", not waiting, "up to date" if not waiting else f"pending: {names}",
                  "sales-etl migrate" if waiting else "")]


def _keys(settings: Settings) -> list[Check]:
    from psycopg2 import sql

    from .datasets import load_datasets
    from .protect import Protector

    fernet, blind = settings.require_keys()
    protector = Protector(fernet, blind)
    stale, wrong_hash, sampled = [], [], 0
    for ds in load_datasets(settings.datasets_dir).values():
        for col in ds.sensitive:
            query = sql.SQL("SELECT {c}, {h} FROM {t} ORDER BY {id} DESC LIMIT 20").format(
                c=sql.Identifier(col.sql[0]), h=sql.Identifier(col.hash_column),
                t=sql.Identifier(ds.table), id=sql.Identifier(ds.row_id))

            def fetch(cur: Any, q: Any = query, table: str = ds.table) -> list[Any]:
                cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
                if not cur.fetchone()[0]:
                    return []
                cur.execute(q)
                return list(cur.fetchall())

            for token, digest in _with_db(settings, fetch):
                if token is None:
                    continue
                sampled += 1
                where = f"{ds.table}.{col.sql[0]}"
                if not protector.is_current(token):
                    stale.append(where)
                try:
                    if protector.hash(protector.decrypt(token)) != bytes(digest):
                        wrong_hash.append(where)
                except ValueError:
                    wrong_hash.append(f"{where} (does not decrypt with any key)")
    stale, wrong_hash = sorted(set(stale)), sorted(set(wrong_hash))
    return [
        Check("encryption keys", not stale, f"{len(fernet)} key(s); {sampled} recent values "
              "sampled" + (f"; not under the newest key: {', '.join(stale)}" if stale else
                           ", all under the newest key"),
              "sales-etl rotate-keys (then drop the old key)" if stale else ""),
        Check("blind-index key", not wrong_hash,
              "stored hashes match BLIND_INDEX_KEY" if not wrong_hash else
              f"hashes do not match: {', '.join(wrong_hash)}",
              "BLIND_INDEX_KEY differs from the key the rows were hashed with: set the right "
              "key, or finish rotate-keys --blind-index" if wrong_hash else ""),
    ]


def _datasets(settings: Settings) -> list[Check]:
    from .datasets import load_datasets
    from .dbcheck import check

    results = check(settings.require_database(),
                    list(load_datasets(settings.datasets_dir).values()))
    problems = [f"{name}: {p}" for name, ps in results.items() for p in ps]
    return [Check("datasets", not problems,
                  f"{len(results)} dataset(s) match their tables" if not problems
                  else "; ".join(problems), "sales-etl migrate, or correct the dataset file"
                  if problems else "")]
