"""Run ``sales-etl`` as an operator does: a separate process, in a shell, with or without a
terminal (a pseudo-terminal from the standard library's ``pty``), against a project folder
whose local stack is the test session's (or none, or a stopped one)."""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from sales_etl.config.settings import project_root
from sales_etl_dev import devstack

BIN = Path(sys.executable).parent
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^\s*File \".*\", line \d+", re.M)
# Settings a developer's shell might hold: never inherited by the commands under test.
_SETTINGS = re.compile(
    r"^(SalesStorage|AzureWebJobsStorage|AZ_|POSTGRES_|PG|FERNET_|BLIND_|"
    r"SALES_|RETRY_|CHUNK_|DATASETS_DIR|MIGRATIONS_DIR|APPLICATIONINSIGHTS)"
)


@dataclass
class Result:
    code: int
    out: str  # stdout (with a terminal: everything the terminal showed)
    err: str  # stderr ("" with a terminal: it went to the same screen)

    @property
    def text(self) -> str:
        return self.out + self.err


def project(tmp: Path, stack: devstack.StackState | None, *, stopped: bool = False) -> Path:
    """A project folder for SALES_ETL_HOME: the checkout's files (linked), and in
    ``.devstack/`` a copy of the test stack's state (its own, so that a command that
    changes the stack's keys changes the copy), a stopped one, or nothing."""
    tmp.mkdir(parents=True, exist_ok=True)
    for entry in project_root().iterdir():
        if (
            entry.name not in (".devstack", ".git", ".env", "certs", "data")
            and not (tmp / entry.name).exists()
        ):
            (tmp / entry.name).symlink_to(entry)
    if stack is not None:
        home = tmp / ".devstack"
        home.mkdir(exist_ok=True)
        state = {**asdict(stack), "home": str(home)}
        if stopped:  # what a crashed or rebooted stack leaves: state whose processes are gone
            dead = devstack.free_ports(4)
            state.update(
                azurite_pid=_dead_pid(),
                blob_port=dead[0],
                queue_port=dead[1],
                table_port=dead[2],
                pg_port=dead[3],
            )
        (home / "stack.json").write_text(json.dumps(state))
    return tmp


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid  # a process that has exited (and been reaped)


def environment(home: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not _SETTINGS.match(k)}
    env.update(
        PATH=f"{BIN}:{env.get('PATH', '/usr/bin:/bin')}",
        SALES_ETL_HOME=str(home),
        COLUMNS="200",
        TERM="xterm",
        LANG="C.UTF-8",
    )
    env.pop("PYTEST_CURRENT_TEST", None)
    env.update(extra or {})
    return env


def run(command: str, env: dict[str, str], cwd: Path, *, tty: bool = False, timeout: float = 300) -> Result:
    """``command`` in bash; with ``tty``, stdin, stdout and stderr are a terminal."""
    if not tty:
        proc = subprocess.run(
            ["bash", "-c", command],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        return Result(proc.returncode, proc.stdout, proc.stderr)
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))  # a real size
    child = subprocess.Popen(
        ["bash", "-c", command],
        env=env,
        cwd=cwd,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
    )
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if child.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        code = child.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        os.close(master)
    text = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return Result(code, text, "")


def assert_clean(result: Result, command: str) -> None:
    """No traceback on either stream."""
    assert not TRACEBACK.search(result.text), f"{command}: traceback:\n{result.text}"
