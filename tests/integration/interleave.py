"""Threads and worker processes for the tests that make an interleaving or a crash happen
every time (the fixtures that hold the pipeline at a point are in conftest.py): what a
thread returned or raised is kept for the test to assert on, never lost with the thread; a
worker process is another instance of the app, with this session's app settings.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable
from typing import Any

from sales_etl.config.settings import project_root

# A worker process that delivers one blob to the blob trigger: argv container, blob name.
WORKER = """
import sys
from sales_etl_dev import hostcall
hostcall.invoke_blob_trigger(sys.argv[1], sys.argv[2])
"""


def run_in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Start ``fn`` in a thread; the list receives its result, or the exception it raised."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(fn())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=target)
    thread.start()
    return thread, out


def run_threads(*fns: Callable[[], Any], timeout: float = 180) -> list[Any]:
    """Run each of ``fns`` in its own thread at once; their results (or exceptions), in order."""
    started = [run_in_thread(fn) for fn in fns]
    for thread, _ in started:
        thread.join(timeout)
    return [out[0] if out else None for _, out in started]


def start_python(script: str, *args: str, quiet: bool = True) -> subprocess.Popen[bytes]:
    """Start ``script`` in a new Python process (the checkout's root, this environment)."""
    output = subprocess.DEVNULL if quiet else None
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=project_root(),
        env=dict(os.environ),
        stdout=output,
        stderr=output,
    )


def run_python(script: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[bytes]:
    """Run ``script`` in a new Python process to its end (a crash is its exit status)."""
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        cwd=project_root(),
        env=dict(os.environ),
        timeout=timeout,
        capture_output=True,
        check=False,
    )
