"""The ledger and folder commands: ``runs`` (what happened to each file), ``retry-failed``
(the sweep now) and ``requeue`` (blobs back from failed/ or deadletter/), and the run table
every command that loads prints."""

from __future__ import annotations

import json
import shlex
import urllib.parse
from typing import Any

import click

from sales_etl.cli import context
from sales_etl.config.settings import Settings
from sales_etl.db import ledger
from sales_etl.db.connection import connect
from sales_etl.flow import retry


@click.command("runs")
@click.option(
    "--json", "as_json", is_flag=True, help="JSON lines: one JSON object per run, one per line, newest first."
)
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option(
    "--blob",
    default=None,
    help="Only runs whose blob path contains this text "
    "(as typed: no wildcards; a path with the container in front, or a blob URL, "
    "is taken as the path in the container).",
)
def runs_cmd(as_json: bool, limit: int, blob: str | None) -> None:
    """Show the ledger: the latest file attempts, newest first, each with its reason code
    and, for content already loaded under another name, the run it duplicates.

    \b
    Example:
      sales-etl runs --limit 5
      sales-etl runs --json --blob mine.csv | jq .status
    """
    from sales_etl.storage.blobpath import pasted_name

    settings = context.settings()
    if blob is not None and blob.strip():  # as pasted: with the container, or a URL
        blob = pasted_name(blob, settings.container)
    conn = connect(settings.require_database())
    try:
        rows = ledger.recent(conn, limit=limit, blob=blob)
    finally:
        conn.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
    else:
        print_runs(rows)


def shown(text: str) -> str:
    """``text`` with control characters escaped (a blob name is chosen by whoever uploads
    it: no escape sequence of it reaches the operator's terminal, no newline breaks a row)."""
    return "".join(
        c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
        for c in text
    )


def print_runs(rows: list[dict[str, Any]]) -> None:
    click.echo(
        f"{'run':>5} {'status':8} {'read':>8} {'loaded':>8} {'dupes':>8} "
        f"{'rejected':>8} {'secs':>6}  file / reason"
    )
    for r in rows:
        secs = r.get("seconds")
        detail = str(r.get("blob_path") or "")
        if r.get("reason_code"):
            detail += f"  [{r['reason_code']}]"
        if r.get("duplicate_of") is not None:
            detail += f" duplicate of run {r['duplicate_of']}"
        if r.get("error"):
            detail += f" {r['error']}"
        if r.get("rejects_path"):
            detail += f"  rejects: {r['rejects_path']}"
        seconds = "-" if secs is None else f"{float(secs):.2f}"
        click.echo(
            f"{r.get('run_id') or '-':>5} {r.get('status') or '':8} "
            f"{r.get('rows_read') or 0:>8} {r.get('rows_loaded') or 0:>8} "
            f"{r.get('rows_duplicate') or 0:>8} {r.get('rows_rejected') or 0:>8} "
            f"{seconds:>6}  {shown(detail)}"
        )


def local_hint(settings: Settings, blobs: list[str]) -> None:
    if blobs and context.uses_local_stack(settings):
        click.echo(
            "local stack: unless `func start` runs, nothing takes them from incoming/; load each with:"
        )
        for blob in blobs:
            click.echo(f"  sales-etl process {shlex.quote(blob)}")


@click.command("retry-failed")
@click.option(
    "--force",
    is_flag=True,
    help="Retry every failed blob now, data errors too (blobs past "
    "RETRY_MAX_ATTEMPTS still go to deadletter/: see requeue).",
)
def retry_cmd(force: bool) -> None:
    """Run the retry sweep now: due blobs in failed/ back to incoming/, exhausted ones
    (RETRY_MAX_ATTEMPTS) to deadletter/.

    \b
    Example:
      sales-etl retry-failed --force
    """
    settings = context.settings()
    context.storage_ready(settings)
    report = retry.sweep(settings, force=force)
    click.echo(
        f"retried {len(report.retried)}, dead-lettered {len(report.deadlettered)}, "
        f"waiting {len(report.waiting)}, kept {len(report.kept)} (data errors, "
        f"nothing changed), busy {len(report.busy)}"
    )
    local_hint(settings, report.retried)


@click.command("requeue")
@click.argument("names", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every blob of the chosen folders.")
@click.option(
    "--from",
    "folders",
    type=click.Choice(["failed", "deadletter"]),
    multiple=True,
    help="Only this folder [default: both].",
)
def requeue_cmd(names: tuple[str, ...], everything: bool, folders: tuple[str, ...]) -> None:
    """Move blobs from failed/ or deadletter/ back to incoming/ (where they first landed),
    with a fresh set of attempts; each move is recorded in the ledger (`runs`: status
    skipped, reason requeued). NAMES: blob paths (failed/sales/x.csv), paths below the
    folder (sales/x.csv) or file names (x.csv). Exit status 1 if a name matches nothing.

    \b
    Example:
      sales-etl requeue deadletter/sales/mine.csv
      sales-etl requeue --all --from deadletter
    """
    from sales_etl.flow.requeue import SOURCES, requeue

    if not names and not everything:
        raise click.UsageError("name the blobs to requeue, or give --all")
    if names and everything:
        raise click.UsageError("give blob names or --all, not both")
    settings = context.settings()
    context.storage_ready(settings)
    report = requeue(settings, names, everything=everything, folders=folders or SOURCES)
    for item in report.moved:
        click.echo(f"{item.source} -> {item.target} (after {item.attempts} attempt(s))")
    click.echo(
        f"requeued {len(report.moved)}, busy {len(report.busy)} (changed or moved meanwhile: left alone)"
    )
    for name in report.refused:
        click.echo(
            f"refused (unsafe name, left where it is): {urllib.parse.quote(name[:200], safe='/ ._-~')}",
            err=True,
        )
    local_hint(settings, [item.target for item in report.moved])
    if report.unrecorded:
        raise click.ClickException(
            f"moved {len(report.moved)} blob(s), but the ledger could not record it: {report.unrecorded}"
        )
    if report.unmatched:
        raise click.ClickException(
            "no blob in failed/ or deadletter/ matches: " + ", ".join(report.unmatched)
        )


RUN_COMMANDS = (runs_cmd, retry_cmd, requeue_cmd)
