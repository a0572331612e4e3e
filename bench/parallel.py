"""The parallel case: N files loaded at once, in N processes (as N Functions instances
would), directly and through PgBouncer, against N plain COPY streams of the stored rows
run at once (the parallel floor).

Each process imports everything, says it is ready, and waits for one go signal, so the
processes start together; aggregate rows/s is every row loaded over the time from the
first start to the last end. Server CPU is the CPU time of the cluster's own processes
(the postmaster and its children) over the case, WAL the bytes of WAL written.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

import click

from bench.floor import prepare_payload
from sales_etl.config.settings import Settings, load_settings, project_root
from sales_etl.db.connection import connect
from sales_etl.storage import container as storage
from sales_etl_dev import devstack
from sales_etl_dev.generate import generate

MODES = ("floor", "direct", "pgbouncer")


@dataclass
class Parallel:
    mode: str
    files: int
    rows: int
    seconds: float
    rss_mb: list[float]
    server_cpu: float
    wal_mb: float

    @property
    def rate(self) -> float:
        return self.rows / self.seconds if self.seconds else 0.0


def _server_cpu(state: devstack.StackState) -> float:
    """CPU seconds used so far by the cluster's processes (postmaster and children)."""
    pidfile = Path(state.home) / "pg" / "data" / "postmaster.pid"
    master = int(pidfile.read_text().split()[0])
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(proc.name), int(fields[1])
        if pid == master:  # its own time and that of the backends it has reaped
            total += sum(int(f) for f in fields[11:15]) / tick
        elif ppid == master:  # the backends and workers still running
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _wal_lsn(settings: Settings) -> int:
    conn = connect(settings.require_admin_database(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


class Cardinality(TypedDict):
    """How many distinct customers, products and stores the generated files hold."""

    customers: int
    products: int
    stores: int


def inputs(
    work: Path, rows: int, count: int, cardinality: Cardinality, settings: Settings
) -> tuple[list[Path], list[Path]]:
    """``count`` files of ``rows`` distinct rows each, and their floor payloads."""
    csvs, payloads = [], []
    for i in range(count):
        path = work / f"parallel_{rows}_{i}.csv"
        if not path.exists():
            generate(path, rows, seed=100 + i, **cardinality)
        payload = work / f"parallel_{rows}_{i}.copy"
        if not payload.exists():
            prepare_payload(settings, path, payload)
        csvs.append(path)
        payloads.append(payload)
    return csvs, payloads


def run_case(
    state: devstack.StackState, settings: Settings, mode: str, args: list[str], work: Path
) -> Parallel:
    """Start one process per argument, release them together, wait for all."""
    env = {**os.environ, **state.env(pooled=mode == "pgbouncer")}
    go = work / f"go-{os.getpid()}-{time.monotonic_ns()}"
    env["BENCH_GO"] = str(go)
    case = "floor" if mode == "floor" else "blob"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.cases", case, arg],
            env=env,
            cwd=project_root(),
            stdout=subprocess.PIPE,
        )
        for arg in args
    ]
    try:
        deadline = time.monotonic() + 300
        while len(list(work.glob(f"{go.name}.ready.*"))) < len(procs):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise click.ClickException(f"parallel {mode}: a process did not get ready")
            time.sleep(0.02)
        cpu, wal = _server_cpu(state), _wal_lsn(settings)
        go.touch()
        results = []
        for p in procs:
            out, _ = p.communicate(timeout=3600)
            if p.returncode != 0:
                raise click.ClickException(f"parallel {mode}: a process failed ({p.returncode})")
            results.append(json.loads(out.decode().strip().splitlines()[-1]))
        cpu, wal = _server_cpu(state) - cpu, _wal_lsn(settings) - wal
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        for path in [go, *work.glob(f"{go.name}.ready.*")]:
            path.unlink(missing_ok=True)
    if mode != "floor" and any(r.get("status") != "loaded" for r in results):
        raise click.ClickException(f"parallel {mode}: not every file loaded: {results}")
    seconds = max(r["end"] for r in results) - min(r["start"] for r in results)
    return Parallel(
        mode,
        len(args),
        sum(int(r["rows"]) for r in results),
        seconds,
        [float(r["rss_mb"]) for r in results],
        cpu,
        wal / 2**20,
    )


def run_all(
    state: devstack.StackState,
    work: Path,
    rows: int,
    counts: list[int],
    cardinality: Cardinality,
    fresh: Any,
    echo: Any,
) -> list[Parallel]:
    settings = load_settings(state.env())
    modes = [m for m in MODES if m != "pgbouncer" or state.pgbouncer_port is not None]
    if len(modes) < len(MODES):
        echo("  (PgBouncer is not installed: the pooled rows are left out)")
    echo(f"parallel: {max(counts)} files of {rows:,} rows ...")
    csvs, payloads = inputs(work, rows, max(counts), cardinality, settings)
    cc = storage.container_client(settings)
    found = []
    for mode in modes:
        for n in counts:
            fresh(settings)
            args = (
                [str(p) for p in payloads[:n]]
                if mode == "floor"
                else [storage.upload(cc, c, dataset="sales") for c in csvs[:n]]
            )
            found.append(run_case(state, settings, mode, args, work))
            m = found[-1]
            echo(f"  {mode} x{n}: {m.rate:,.0f} rows/s, server CPU {m.server_cpu:.1f} s in {m.seconds:.1f} s")
    return found


def report(results: list[Parallel], rows: int) -> list[str]:
    floors = {m.files: m for m in results if m.mode == "floor"}
    lines = [
        "",
        f"## Files arriving in parallel ({rows:,} rows each)",
        "",
        "N files loaded at once by N processes (the blob-triggered function as the host "
        "calls it, one process per file, as separate instances would), released together; "
        "the floor is N plain `COPY` streams of the stored rows at once. rows/s: all rows "
        "over first start to last end. Server CPU: CPU seconds of the PostgreSQL cluster's "
        "processes during the case, and the cores that makes on average.",
        "",
        "| mode | files | rows | seconds | rows/s | x floor rows/s | server CPU s (cores) "
        "| WAL MB | peak RSS MB per process (max) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        floor = floors.get(m.files)
        ratio = f"{m.rate / floor.rate:.2f}" if floor and floor.rate else "-"
        cores = m.server_cpu / m.seconds if m.seconds else 0.0
        lines.append(
            f"| {m.mode} | {m.files} | {m.rows:,} | {m.seconds:.2f} | {m.rate:,.0f} "
            f"| {ratio} | {m.server_cpu:.1f} ({cores:.2f}) | {m.wal_mb:,.0f} "
            f"| {max(m.rss_mb):.0f} |"
        )
    return lines
