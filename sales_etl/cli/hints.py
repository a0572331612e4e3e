"""What the command line says when a command fails: one line naming the reason, and what
to do about it. No traceback (``sales-etl -v`` logs it)."""

from __future__ import annotations

import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sales_etl.config.settings import STORAGE_CONNECTION, app_settings
from sales_etl.core.errors import EtlError, classify

EXIT_FAILED = 1  # the command ran and failed (a one-line reason on stderr)
EXIT_USAGE = 2  # the command line itself is wrong (Click's usage errors: missing file, bad option)

DEV_UP = "sales-etl dev up"
NO_DEV_TOOLS = (
    "export the settings of your deployment (docs/settings.md); the local stack's "
    "commands (`sales-etl dev ...`) come with the development package, which is "
    "not installed here (`make setup` in a checkout installs it)"
)


@dataclass(frozen=True)
class Stack:
    """The local dev stack as a command sees it."""

    status: str  # "running", "stopped" (state left behind, processes gone), "unreadable" or "none"
    home: Path
    env: Mapping[str, str] | None  # its settings, when running
    # False where the development package (dev/, which runs the local stack) is not
    # installed (an installed wheel, an operator's machine): `sales-etl dev up` is not there
    dev_tools: bool = True

    def hint(self) -> str:
        if self.status == "running":
            return ""
        if not self.dev_tools:
            return NO_DEV_TOOLS
        if self.status == "unreadable":
            return (
                f"the local stack's state file {self.home / 'stack.json'} cannot be read: stop its "
                f"servers (`sales-etl dev down`, or by hand), remove {self.home}, then `{DEV_UP}`"
            )
        if self.status == "stopped":
            return (
                f"the local stack in {self.home} is not running (stopped, or the machine "
                f"restarted): start it with `{DEV_UP}`"
            )
        return (
            f"no local stack is running: start one with `{DEV_UP}` (commands then use it), "
            f"or export the settings of your deployment (docs/settings.md)"
        )


def local_stack(home: Path | None = None) -> Stack:
    """The local dev stack, when the development package (dev/) is installed; without it
    (a deployment, an installed wheel) there is none to fall back on."""
    try:
        from sales_etl_dev import devstack
    except ImportError:
        return Stack("none", home or Path(".devstack"), None, dev_tools=False)
    home = home or devstack.default_home()
    try:
        state = devstack.read_state(home)
    except (ValueError, OSError):  # its state file unreadable: no stack to fall back on
        return Stack("unreadable", home, None)
    if state is None:
        return Stack("none", home, None)
    if not devstack.is_running(state):
        return Stack("stopped", home, None)
    return Stack("running", home, state.env())


def _pgcode(exc: BaseException) -> str | None:
    seen: BaseException | None = exc
    while seen is not None:
        code = getattr(seen, "pgcode", None)
        if isinstance(code, str):
            return code
        seen = seen.__cause__ or seen.__context__
    return None


def _missing_settings(message: str) -> bool:
    return any(
        f"{name}: not set" in message
        for name in ("POSTGRES_HOST", STORAGE_CONNECTION, "FERNET_KEYS", "BLIND_INDEX_KEY")
    )


def _endpoint(connection: str) -> tuple[str, str]:
    parts = dict(p.split("=", 1) for p in connection.split(";") if "=" in p)
    url = urllib.parse.urlsplit(parts.get("BlobEndpoint", ""))
    return (url.hostname or "", str(url.port or ""))


def _stale_local(stack: Stack) -> bool:
    """True when the exported settings name the running local stack's host with a port it
    no longer listens on (exported before a restart)."""
    env = stack.env or {}
    exported = app_settings()  # the environment, read through settings
    db_host, db_port = exported.get("POSTGRES_HOST"), exported.get("POSTGRES_PORT")
    if db_host and db_host == env.get("POSTGRES_HOST") and db_port and (db_port != env.get("POSTGRES_PORT")):
        return True
    mine, theirs = exported.get(STORAGE_CONNECTION), env.get(STORAGE_CONNECTION)
    if not mine or not theirs:
        return False
    (host, port), (stack_host, stack_port) = _endpoint(mine), _endpoint(theirs)
    return bool(host) and host == stack_host and port != stack_port


def one_line(exc: BaseException, stack: Stack) -> str:
    """The reason ``exc`` ended the command, in one line, with a hint where one helps."""
    if isinstance(exc, EtlError):
        error: EtlError = exc
    elif type(exc).__module__.startswith(("psycopg2", "azure", "sqlalchemy")) or isinstance(exc, OSError):
        error = classify(exc)
    else:
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        return f"unexpected {type(exc).__name__}: {first} (run `sales-etl -v ...` for the details)"
    text = " ".join(error.message.split())
    hints: list[str] = []
    if _missing_settings(text) and stack.status != "running":
        hints.append(stack.hint())
    if error.code in ("db_unreachable", "storage_unreachable", "io_transient") and (
        stack.status != "running" and stack.dev_tools
    ):
        where = "the local stack is not running" if stack.status == "stopped" else "nothing answers there"
        hints.append(
            f"{where}: if these are the local stack's settings, start it with "
            f'`{DEV_UP}` and export them again (eval "$(sales-etl dev env)": its '
            "ports change at every start)"
        )
    if error.code in ("db_unreachable", "storage_unreachable", "io_transient") and (
        stack.status == "running" and _stale_local(stack)
    ):
        hints.append(
            "the local stack runs on other ports now (they change at every start): "
            "if these are its settings, export them again with "
            'eval "$(sales-etl dev env)", or unset them (commands then use it)'
        )
    if _pgcode(exc) == "42501":
        hints.append(
            "permission denied: this command needs the schema owner's connection "
            "(POSTGRES_ADMIN_USER and POSTGRES_ADMIN_PASSWORD), not the loader role's"
        )
    return "; ".join([text, *[h for h in hints if h]])
