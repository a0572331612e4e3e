"""Threads for the tests that make an interleaving happen every time (the fixtures that
hold the pipeline at a point are in conftest.py): what a thread returned or raised is kept
for the test to assert on, never lost with the thread."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


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
