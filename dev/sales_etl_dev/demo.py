"""``make demo`` / ``sales-etl demo``: the product end to end on the local stack."""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sales_etl.config.settings import load_settings
from sales_etl.db import ledger, migrate
from sales_etl.db.connection import connect
from sales_etl.storage import container as storage

from . import devstack, hostcall
from .generate import generate

SEED = 20251009  # fixed: a second run sends the same transactions (and must load none)


def run_demo(
    rows: int, bad_rows: int, echo: Callable[[str], Any], state: devstack.StackState | None = None
) -> list[dict[str, Any]]:
    echo("starting the local stack (Azurite + PostgreSQL) ...")
    state = state or devstack.up()
    env = state.env()
    hostcall.provide_app_settings(env)  # what the host gives the worker: app settings
    settings = load_settings(env)
    db = settings.require_database()
    echo(f"  PostgreSQL {db.describe()}; Azurite on 127.0.0.1:{state.blob_port}")
    applied = migrate.migrate(settings.require_admin_database())
    echo(
        f"migrations: {len(applied)} applied now, database up to date; the loader runs as "
        f"the least-privileged role {db.user}"
    )

    data = Path(state.home) / "demo-data"
    big = generate(data / f"sales_demo_{rows}.csv", rows, seed=SEED)
    bad = generate(data / "sales_demo_bad_rows.csv", max(2000, bad_rows), bad_rows=bad_rows, seed=SEED + 1)
    echo(
        f"generated {big.path.name} ({big.rows} rows) and {bad.path.name} "
        f"({bad.rows} rows, {len(bad.bad)} of them bad)"
    )

    storage.init_storage(settings)
    cc = storage.container_client(settings)
    uploaded = [storage.upload(cc, big.path), storage.upload(cc, bad.path, dataset="sales")]
    echo("uploaded to " + ", ".join(f"{settings.container}/{b}" for b in uploaded))

    conn = connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(run_id), 0) FROM etl_runs")
            before = int(cur.fetchone()[0])
        conn.commit()
        pending = [b.name for b in cc.list_blobs(name_starts_with=f"{storage.INCOMING}/")]
        echo(f"invoking the blob-triggered function for {len(pending)} blob(s) in incoming/ ...")
        started = time.monotonic()
        for name in pending:
            hostcall.invoke_blob_trigger(settings.container, name)
        elapsed = time.monotonic() - started
        with conn.cursor() as cur:
            cur.execute("SELECT run_id FROM etl_runs WHERE run_id > %s ORDER BY run_id", (before,))
            ids = {r[0] for r in cur.fetchall()}
        conn.commit()
        runs = [r for r in ledger.recent(conn, limit=max(1, len(ids)) + 5) if r["run_id"] in ids]
        runs.sort(key=lambda r: r["run_id"])
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM sales")
            total = int(cur.fetchone()[0])
            cur.execute("SELECT transaction_id, left(customer_id, 24) FROM sales ORDER BY sale_id LIMIT 1")
            sample = cur.fetchone()
        conn.commit()
    finally:
        conn.close()

    echo("")
    echo(f"{'file':38} {'status':8} {'read':>8} {'loaded':>8} {'dupes':>8} {'rejected':>8} {'secs':>6}")
    for r in runs:
        echo(
            f"{r['blob_path'][-38:]:38} {r['status']:8} {r['rows_read']:>8} {r['rows_loaded']:>8} "
            f"{r['rows_duplicate']:>8} {r['rows_rejected']:>8} {r['seconds'] or 0:>6.2f}"
        )
        if r["rejects_path"]:
            echo(f"{'':38} rejects: {settings.container}/{r['rejects_path']}")
        if r["error"]:
            echo(f"{'':38} {r['reason_code']}: {r['error']}")
        if r["status"] == "loaded" and r["rows_loaded"] == 0 and r["rows_duplicate"]:
            echo(
                f"{'':38} all {r['rows_duplicate']} valid rows were duplicates of rows "
                "already loaded: nothing new"
            )
    echo(f"\n{len(runs)} file(s) in {elapsed:.1f} s; the sales table now holds {total} rows.")
    cli = command_prefix()
    if sample:
        echo(
            f"sensitive ids are stored encrypted: {sample[0]} has customer_id {sample[1]}...; "
            f"decrypt with: {cli} show {sample[0]}"
        )
    echo(f'inspect: {cli} runs | eval "$({cli} dev env)" && psql | {cli} dev down')
    return runs


def command_prefix() -> str:
    """How to type ``sales-etl`` in a fresh shell: bare when it is on PATH, else the path of
    the one running (``.venv/bin/sales-etl`` from the checkout's root)."""
    found = shutil.which("sales-etl")
    script = Path(sys.executable).parent / "sales-etl"
    if found and Path(found).resolve() == script.resolve():
        return "sales-etl"
    if not script.exists():
        return f"{sys.executable} -m sales_etl"
    try:
        return str(script.relative_to(Path.cwd()))
    except ValueError:
        return str(script)
