"""Invocations in processes of their own (as separate Functions instances would run them),
the overlapping files they load, and the outcome every scale-out test asserts."""

from __future__ import annotations

import multiprocessing
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from azure.storage.blob import ContainerClient

from sales_etl.app import triggers
from sales_etl.config.settings import Settings
from sales_etl.db import load
from sales_etl.flow import pipeline
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import make_frame, write_csv

from ..conftest import names, query

CTX = multiprocessing.get_context("fork")  # the test process has everything imported
SHARED, OWN = 100, 100  # rows per file: the shared rows first (one chunk), then its own


@dataclass
class Files:
    blobs: list[str]  # the burst's files
    keys: set[str]  # every distinct transaction_id: what the table must hold at the end
    rows: dict[str, int]  # rows read per blob, the history file's too


def overlapping_files(settings: Settings, cc: ContainerClient, work: Path, count: int) -> Files:
    """``count`` files in pairs: both files of a pair start with the same 100 rows (same
    order: colliding loads wait for each other, never deadlock), then 100 of their own;
    the last file is a byte-for-byte copy of the one before it under another name.

    A history file holding every pair's shared rows is loaded first, so every file of the
    burst meets stored keys in its first chunk and looks its second chunk's keys up."""
    frame = make_frame(count // 2 * SHARED + count * OWN, seed=1212, customers=30)
    blobs: list[str] = []
    rows: dict[str, int] = {}
    history = frame.iloc[: count // 2 * SHARED]
    path = work / "history.csv"
    write_csv(history, path)
    name = storage.upload(cc, path, dataset="sales")
    assert pipeline.process_blob(cc.get_blob_client(name), settings).status == "loaded"
    rows[name] = len(history)
    keys = set(history["transaction_id"])
    for i in range(count):
        pair = i // 2
        shared = frame.iloc[pair * SHARED : (pair + 1) * SHARED]
        own_at = count // 2 * SHARED + (i - 1 if i == count - 1 else i) * OWN
        own = frame.iloc[own_at : own_at + OWN]
        path = work / f"burst_{i:02d}.csv"
        both = pd.concat([shared, own])
        keys.update(both["transaction_id"])
        write_csv(both, path)
        blobs.append(storage.upload(cc, path, dataset="sales"))
        rows[blobs[-1]] = len(both)
    return Files(blobs, keys, rows)


def _invoke(env: dict[str, str], blob: str, hold: Any, release: Any, out: Any) -> None:
    """The child: the app settings as the host gives them, then the blob trigger as the
    host calls it. With ``hold``, it reports when it holds its database transaction (the
    claim and the ledger row are in; the load starts next) and waits for ``release``."""
    try:
        os.environ.update(env)
        triggers.settings.cache_clear()
        if hold is not None:
            original = load.Loader.__init__

            def holding(self: load.Loader, *args: Any, **kwargs: Any) -> None:
                hold.put(blob)
                release.wait(300)
                original(self, *args, **kwargs)

            load.Loader.__init__ = holding  # type: ignore[method-assign]
        hostcall.invoke_blob_trigger(env["SALES_CONTAINER"], blob)
        out.put((blob, "returned", ""))
    except BaseException as exc:  # reported to the test, which asserts on it
        out.put((blob, "raised", repr(exc)))
    finally:
        os._exit(0)


@dataclass
class Burst:
    """Processes started at once, one blob each."""

    procs: list[Any] = field(default_factory=list)
    hold: Any = None
    release: Any = None
    out: Any = None
    held: list[str] = field(default_factory=list)
    ended: dict[str, tuple[str, str]] = field(default_factory=dict)

    def poll(self, pause: float = 0.2) -> None:
        time.sleep(pause)
        while self.hold is not None and not self.hold.empty():
            self.held.append(self.hold.get())
        while not self.out.empty():
            blob, outcome, detail = self.out.get()
            self.ended[blob] = (outcome, detail)


@contextmanager
def burst(env: dict[str, str], blobs: list[str], *, hold: bool = False) -> Iterator[Burst]:
    """Start one process per blob; on leaving, release any held ones and wait for all."""
    # SimpleQueue: a put is written before the child goes on (a child ends with os._exit)
    b = Burst(
        out=CTX.SimpleQueue(), hold=CTX.SimpleQueue() if hold else None, release=CTX.Event() if hold else None
    )
    for blob in blobs:
        p = CTX.Process(target=_invoke, args=(env, blob, b.hold, b.release, b.out))
        p.start()
        b.procs.append(p)
    try:
        yield b
    finally:
        if b.release is not None:
            b.release.set()
        for p in b.procs:
            p.join(300)
            if p.is_alive():
                p.kill()
                p.join()
        b.poll(0)
        for q in (b.out, b.hold):
            if q is not None:
                q.close()


def assert_loaded_once(settings: Settings, cc: ContainerClient, files: Files) -> None:
    """The table holds every distinct row exactly once; the ledger one loaded run per
    file, its counts adding up; every blob is in processed/ once and nowhere else."""
    stored = query(settings, "SELECT transaction_id FROM sales")
    assert len(stored) == len(files.keys)
    assert {r[0] for r in stored} == files.keys
    loaded = query(
        settings,
        "SELECT blob_path, rows_read, rows_loaded, rows_duplicate,"
        " rows_rejected FROM etl_runs WHERE status = 'loaded' ORDER BY blob_path",
    )
    assert [r[0] for r in loaded] == sorted(files.rows)
    for blob, read, rows, dupes, rejected in loaded:
        assert (read, rejected) == (files.rows[blob], 0)
        assert rows + dupes == read
    assert sum(r[2] for r in loaded) == len(files.keys)
    everything = names(cc)
    for folder in (storage.INCOMING, storage.FAILED, storage.DEADLETTER, storage.REJECTED):
        assert [n for n in everything if n.startswith(f"{folder}/")] == []
    processed = [n for n in everything if n.startswith(f"{storage.PROCESSED}/")]
    assert sorted(n.rsplit("/", 1)[1] for n in processed) == sorted(b.rsplit("/", 1)[1] for b in files.rows)
