"""PgBouncer for the local stack: transaction pooling in front of the TLS PostgreSQL, set
up the way Azure's built-in one is (port of its own, TLS on both sides, no startup
parameter ignored), so that what works here works through Azure's port 6432.

Debian's ``pgbouncer`` package (``make pgbouncer-tool`` installs it as root; without it the
stack runs without a pooler and the pooled tests say what to install). It refuses to run
as root, so it runs as the same unprivileged user as the server. Its password file holds
the SCRAM verifiers copied from ``pg_authid`` (no plain password is written): PgBouncer
checks the client's SCRAM proof and logs into the server with the keys it derives.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from pathlib import Path
from typing import Any

from .devsettings import dev_settings

DEFAULT_POOL_SIZE = 8


def find_binary() -> str | None:
    """The pgbouncer executable (Debian installs it under /usr/sbin), or None."""
    override = dev_settings().pgbouncer
    if override is not None:
        return str(override)
    return shutil.which("pgbouncer") or next(
        (str(p) for p in (Path("/usr/sbin/pgbouncer"), Path("/usr/bin/pgbouncer")) if p.exists()), None
    )


def userlist(admin_conn: Any, users: list[str]) -> str:
    """The auth_file lines: each role's SCRAM verifier, read as the superuser."""
    with admin_conn.cursor() as cur:
        cur.execute(
            "SELECT rolname, rolpassword FROM pg_authid WHERE rolname = ANY(%s)"
            " AND rolpassword IS NOT NULL ORDER BY rolname",
            (users,),
        )
        rows = cur.fetchall()
    return "".join(f'"{name}" "{secret}"\n' for name, secret in rows)


def config(
    *,
    listen_port: int,
    server_port: int,
    dbname: str,
    certs: Path | None,
    pool_size: int,
    admin_user: str,
    workdir: Path,
    query_wait_timeout: int = 120,
) -> str:
    """pgbouncer.ini: every database name maps to the server; transaction pooling."""
    lines = [
        "[databases]",
        f"{dbname} = host=127.0.0.1 port={server_port} dbname={dbname}",
        f"postgres = host=127.0.0.1 port={server_port} dbname=postgres",
        "",
        "[pgbouncer]",
        "listen_addr = 127.0.0.1",
        f"listen_port = {listen_port}",
        "unix_socket_dir =",
        f"logfile = {workdir / 'pgbouncer.log'}",
        f"pidfile = {workdir / 'pgbouncer.pid'}",
        "pool_mode = transaction",
        f"default_pool_size = {pool_size}",
        "reserve_pool_size = 0",
        "max_client_conn = 1000",
        f"query_wait_timeout = {query_wait_timeout}",
        "auth_type = scram-sha-256",
        f"auth_file = {workdir / 'userlist.txt'}",
        f"admin_users = {admin_user}",
        f"stats_users = {admin_user}",
        # Like Azure's built-in PgBouncer: no startup parameter is ignored, so a client
        # that sends `options` (session settings) is refused here as it would be there.
        "ignore_startup_parameters =",
        "log_connections = 0",
        "log_disconnections = 0",
    ]
    if certs is not None:
        lines += [
            "client_tls_sslmode = require",  # no plaintext client, like the server's hba
            f"client_tls_cert_file = {workdir / 'server.crt'}",
            f"client_tls_key_file = {workdir / 'server.key'}",
            "server_tls_sslmode = verify-full",
            f"server_tls_ca_file = {workdir / 'ca.crt'}",
        ]
    return "\n".join(lines) + "\n"


def prepare(workdir: Path, ini: str, users: str, certs: Path | None, user: pwd.struct_passwd | None) -> Path:
    """Write the configuration (owner-only files) and return the ini path."""
    workdir.mkdir(parents=True, exist_ok=True)
    if certs is not None:
        for name in ("server.crt", "server.key", "ca.crt"):
            shutil.copy(certs / name, workdir / name)
    (workdir / "pgbouncer.ini").write_text(ini)
    (workdir / "userlist.txt").write_text(users)
    for path in [workdir, *workdir.iterdir()]:
        if path.is_file():
            path.chmod(0o600)
        if user is not None:
            os.chown(path, user.pw_uid, user.pw_gid)
    return workdir / "pgbouncer.ini"


def spawn(binary: str, ini: Path, user: pwd.struct_passwd | None) -> subprocess.Popen[bytes]:
    kwargs: dict[str, object] = {}
    if user is not None:
        kwargs = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}
    return subprocess.Popen(
        [binary, str(ini)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        **kwargs,
    )  # type: ignore[call-overload]
