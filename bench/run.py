"""The benchmark: every path side by side in one run, on a stack of its own.

    make bench          1,000,000 rows (and a 5,000,000-row memory run), then 1, 2, 4 and
                        8 files of 250,000 rows at once, direct and through PgBouncer
    make bench-quick    100,000 rows, one run each (the CI smoke test runs fewer still)
    python -m bench.run --parallel-only [--parallel-rows N]   the parallel case alone

Each case runs in its own process on a freshly migrated empty table (the all-duplicates
case on a table that already holds the rows), so each one's peak RSS and CPU time are its
own. Figures are ratios to the floor measured in the same run: the machine is shared and
noisy, absolute seconds are not comparable between runs.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import pandas as pd

from bench import parallel
from bench.floor import prepare_payload
from sales_etl.config.settings import Settings, load_settings, project_root
from sales_etl.db import migrate
from sales_etl.db.connection import connect
from sales_etl.storage import container as storage
from sales_etl_dev import devstack
from sales_etl_dev.generate import generate

CARDINALITY = parallel.Cardinality(customers=50_000, products=2_000, stores=200)


@dataclass
class Measure:
    case: str
    rows: int
    seconds: list[float]
    cpu: float
    rss_mb: float
    note: str = ""

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def _child(env: dict[str, str], case: str, arg: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cases", case, arg],
        env=env,
        cwd=project_root(),
        stdout=subprocess.PIPE,
        check=False,
    )
    if proc.returncode != 0:
        raise click.ClickException(f"case {case} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    return result


def _fresh(settings: Settings) -> None:
    """An empty, freshly migrated database and an empty container."""
    admin = settings.require_admin_database()
    _admin_sql(settings, "DROP SCHEMA public CASCADE; CREATE SCHEMA public")
    migrate.migrate(admin)
    storage.init_storage(settings)
    cc = storage.container_client(settings)
    for blob in cc.list_blobs():
        cc.delete_blob(blob.name)
    _admin_sql(settings, "CHECKPOINT")


def _admin_sql(settings: Settings, statement: str) -> None:
    conn = connect(settings.require_admin_database(), autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
    finally:
        conn.close()


def _input(work: Path, rows: int, seed: int = 1) -> Path:
    path = work / f"sales_{rows}.csv"
    if not path.exists():
        generate(path, rows, seed=seed, **CARDINALITY)
    return path


def _shuffled(work: Path, source: Path) -> Path:
    path = work / f"{source.stem}_shuffled.csv"
    if not path.exists():
        frame = pd.read_csv(source, dtype=str, keep_default_na=False)
        frame.sample(frac=1.0, random_state=2).to_csv(path, index=False, lineterminator="\n")
    return path


def _measure(case: str, runs: list[dict[str, Any]], note: str = "") -> Measure:
    return Measure(
        case,
        int(runs[-1].get("rows", 0)),
        [r["seconds"] for r in runs],
        max(r["cpu"] for r in runs) if len(runs) == 1 else statistics.median(r["cpu"] for r in runs),
        max(r["rss_mb"] for r in runs),
        note,
    )


@click.command()
@click.option("--rows", type=click.IntRange(1000), default=1_000_000, show_default=True)
@click.option("--quick", is_flag=True, help="100,000 rows, one run of each case.")
@click.option(
    "--runs",
    type=click.IntRange(1),
    default=3,
    show_default=True,
    help="Runs of the floor, load and blob cases (the median is reported).",
)
@click.option(
    "--memory-rows",
    type=click.IntRange(0),
    default=None,
    help="Rows of the extra blob run that shows memory stays flat [default: 5,000,000; 0 in quick mode].",
)
@click.option("--skip-original", is_flag=True, help="Leave out the original design.")
@click.option(
    "--parallel-rows",
    type=click.IntRange(1000),
    default=None,
    help="Rows per file of the parallel case [default: 250,000; 2,000 in quick mode].",
)
@click.option(
    "--parallel-counts",
    default=None,
    help="Files at once, comma-separated [default: 1,2,4,8; 1,2 in quick mode].",
)
@click.option(
    "--parallel-only", is_flag=True, help="Run only the parallel case; replace its section of --out."
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("bench/RESULTS.md"),
    show_default=True,
)
def main(
    rows: int,
    quick: bool,
    runs: int,
    memory_rows: int | None,
    skip_original: bool,
    parallel_rows: int | None,
    parallel_counts: str | None,
    parallel_only: bool,
    out: Path,
) -> None:
    """Run the benchmark and write its table."""
    parallel_rows = parallel_rows or (2_000 if quick else 250_000)
    counts = sorted({int(n) for n in (parallel_counts or ("1,2" if quick else "1,2,4,8")).split(",")})
    if quick:
        rows, runs = min(rows, 100_000), 1
        memory_rows = 0 if memory_rows is None else memory_rows
    memory_rows = 5_000_000 if memory_rows is None else memory_rows
    started = time.time()
    home = project_root() / ".devstack" / "bench"
    before = devstack.read_state(home)
    was_running = before is not None and devstack.is_running(before)
    state = devstack.up(home)
    try:
        if not parallel_only:
            _run(state, rows, quick, runs, memory_rows, skip_original, out, started)
        _run_parallel(state, parallel_rows, counts, out, started)
    finally:
        if not was_running:
            devstack.down(home)  # leave the machine as it was


def _run(
    state: devstack.StackState,
    rows: int,
    quick: bool,
    runs: int,
    memory_rows: int,
    skip_original: bool,
    out: Path,
    started: float,
) -> None:
    env = {**os.environ, **state.env()}
    settings = load_settings(state.env())
    work = project_root() / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    click.echo(f"input: {rows:,} rows ...")
    csv = _input(work, rows)
    shuffled = _shuffled(work, csv)
    payload = work / f"sales_{rows}.copy"
    prepare_payload(settings, csv, payload)
    cc = storage.container_client(settings)
    results: list[Measure] = []

    def series(case: str, arg_for_run: Any) -> list[dict[str, Any]]:
        done = []
        for i in range(runs):
            _fresh(settings)
            arg = arg_for_run()
            done.append(_child(env, case, arg))
            click.echo(f"  {case} run {i + 1}: {done[-1]['seconds']:.2f} s")
        return done

    click.echo("floor: COPY of the final rows")
    results.append(_measure("floor: COPY of the stored rows", series("floor", lambda: str(payload))))
    click.echo("sales-etl load")
    results.append(_measure("sales-etl load (local file)", series("load", lambda: str(csv))))
    click.echo("blob path")
    blob_runs = series("blob", lambda: storage.upload(cc, csv, dataset="sales"))
    results.append(_measure("blob path (function as the host calls it)", blob_runs))
    click.echo("blob path, every row a duplicate (same rows, another order)")
    dup = _child(env, "blob", storage.upload(cc, shuffled, dataset="sales", name="dupes.csv"))
    results.append(
        _measure(
            "blob path, all rows duplicates",
            [dup],
            f"{dup.get('duplicates', 0):,} duplicates, {dup.get('rows', 0)} loaded",
        )
    )
    if not skip_original:
        click.echo("original design (this takes a while)")
        _fresh(settings)
        results.append(
            _measure("original design (pandas, to_sql multi, threads)", [_child(env, "original", str(csv))])
        )
    memory: list[tuple[int, float]] = [(rows, max(r["rss_mb"] for r in blob_runs))]
    if memory_rows:
        click.echo(f"memory: blob path on {memory_rows:,} rows")
        _fresh(settings)
        big = _input(work, memory_rows, seed=5)
        run = _child(env, "blob", storage.upload(cc, big, dataset="sales"))
        memory.append((memory_rows, run["rss_mb"]))
        results.append(_measure(f"blob path, {memory_rows:,} rows (memory)", [run]))
    text = _report(results, memory, rows, runs, quick, time.time() - started, state)
    out.write_text(text)
    click.echo(text)


def _run_parallel(
    state: devstack.StackState, rows: int, counts: list[int], out: Path, started: float
) -> None:
    work = project_root() / "bench" / "work"
    work.mkdir(parents=True, exist_ok=True)
    found = parallel.run_all(state, work, rows, counts, CARDINALITY, _fresh, click.echo)
    marker = "\n## Files arriving in parallel"
    text = out.read_text() if out.exists() else "# Benchmark results\n"
    text = text.split(marker, 1)[0].rstrip("\n") + "\n"
    section = parallel.report(found, rows)
    section.insert(
        3,
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {_machine()}; "
        f"{(time.time() - started) / 60:.1f} minutes since the benchmark started."
        "\n",
    )
    out.write_text(text + "\n".join(section) + "\n")
    click.echo("\n".join(section))


def _machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{os.cpu_count()} cores ({model}), {mem:.0f} GiB, {platform.system()} {platform.release()}"


def _report(
    results: list[Measure],
    memory: list[tuple[int, float]],
    rows: int,
    runs: int,
    quick: bool,
    elapsed: float,
    state: devstack.StackState,
) -> str:
    floor = results[0].median
    pg = Path(state.pg_bin).parent.name
    lines = [
        "# Benchmark results",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python -m bench.run"
        f"{' --quick' if quick else ''}` ({'make bench-quick' if quick else 'make bench'}), "
        f"{elapsed / 60:.1f} minutes in all.",
        "",
        f"- machine: {_machine()}",
        f"- Python {platform.python_version()}; PostgreSQL {pg} (local, TLS verify-full, "
        "fsync off: a throwaway cluster); Azurite from npm",
        f"- input: {rows:,} sales rows from `sales_etl_dev.generate` (50,000 customers, 2,000 "
        "products, 200 stores); the sales table with its primary key, unique "
        "transaction_id and 4 secondary indexes",
        f"- seconds: the operation alone, median of {runs} run(s) for the first three cases; "
        "CPU and peak RSS: the case's own process",
        "",
        "| case | rows | seconds | rows/s | x floor | CPU s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for m in results:
        rate = m.rows / m.median if m.median and m.rows else 0
        note = f" ({m.note})" if m.note else ""
        lines.append(
            f"| {m.case}{note} | {m.rows:,} | {m.median:.2f} | {rate:,.0f} | "
            f"{m.median / floor:.2f} | {m.cpu:.1f} | {m.rss_mb:.0f} |"
        )
    original = next((m for m in results if m.case.startswith("original")), None)
    blob = next((m for m in results if m.case.startswith("blob path (")), None)
    if original and blob:
        lines += [
            "",
            f"The blob path is {original.median / blob.median:.1f} times faster than the "
            "original design, while also validating every row, de-duplicating, keeping "
            "the ledger and the rejects.",
        ]
    lines += ["", "Peak RSS of the blob path by file size (memory stays flat):", ""]
    lines += [f"- {n:,} rows: {mb:.0f} MB" for n, mb in memory]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
