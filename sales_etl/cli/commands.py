"""``sales-etl``: a thin command line over the package. Every command has ``--help`` with
an example.

Settings come from the environment (docs/settings.md); when neither a
database nor a storage setting is exported and the local dev stack is running, its
settings are used, so every command works right after ``make demo``.

Exit status: 0 success; 1 the command failed (one line on stderr saying why, never a
traceback: ``-v`` logs it); 2 the command line is wrong (unknown option, missing file).
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import shlex
import sys
import urllib.parse
from pathlib import Path
from typing import Any

import click

from sales_etl import __version__
from sales_etl.cli import context
from sales_etl.cli.admin import ADMIN_COMMANDS
from sales_etl.cli.hints import one_line
from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import get_dataset
from sales_etl.db import ledger, migrate
from sales_etl.db.connection import connect
from sales_etl.flow import retry
from sales_etl.storage import container as storage

log = logging.getLogger("sales_etl")


# Commands other installed packages add (the development package `sales-etl-dev`, in dev/,
# adds `dev`, `demo` and `generate`): loaded only when run or listed, never at import.
PLUGIN_GROUP = "sales_etl.commands"
DEV_COMMANDS = ("dev", "demo", "generate")


def _plugins() -> dict[str, importlib.metadata.EntryPoint]:
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=PLUGIN_GROUP)}


class _Cli(click.Group):
    """Any failure of a command ends it with exit status 1 and one line (no traceback);
    the commands of installed plugins are listed and run like the built-in ones."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_plugins()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        entry = _plugins().get(cmd_name) if command is None else None
        if entry is not None:
            try:
                loaded = entry.load()
            except ImportError:  # listed by stale metadata, its package gone
                return None
            return loaded if isinstance(loaded, click.Command) else None
        return command

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        if args and args[0] in DEV_COMMANDS and self.get_command(ctx, args[0]) is None:
            raise click.UsageError(
                f"`sales-etl {args[0]}` is a development command and the development "
                "package is not installed here: in a checkout, `make setup` installs it "
                "(requirements-dev.txt, then `pip install -e . -e ./dev`: the local stack "
                "runs from the checkout)",
                ctx,
            )
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except BrokenPipeError:  # `sales-etl runs | head`: the reader left; say nothing more
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            raise SystemExit(1) from None
        except Exception as exc:
            log.info("the command failed", exc_info=True)  # shown with -v
            raise click.ClickException(one_line(exc, context.stack())) from None


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sales-etl")
@click.option("-v", "--verbose", is_flag=True, help="Log every step (INFO level; a failure's traceback too).")
def main(verbose: bool) -> None:
    """Load sales CSV files from Azure Blob Storage into PostgreSQL, exactly once.

    Exit status: 0 success; 1 the command failed (one line saying why);
    2 the command line is wrong (unknown option, missing file).

    \b
    Example:
      sales-etl runs --limit 5
    """
    # Quiet by default: each command reports its outcome itself (a failed file, once);
    # errors the command cannot report (e.g. a sweep's dead letters) still show.
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("azure").setLevel(logging.WARNING)


@main.command("migrate")
@click.option(
    "--dir",
    "extra",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    multiple=True,
    help="Another folder of V<n>__*.sql files, applied after the shipped ones (also: MIGRATIONS_DIR).",
)
def migrate_cmd(extra: tuple[Path, ...]) -> None:
    """Apply pending migrations (migrations/V<n>__*.sql); a no-op when up to date. Runs as
    the schema owner (POSTGRES_ADMIN_USER / POSTGRES_ADMIN_PASSWORD).

    \b
    Example:
      sales-etl migrate --dir my_migrations/
    """
    settings = context.settings()
    admin = settings.require_admin_database()
    folders = [migrate.default_dir(), *([settings.migrations_dir] if settings.migrations_dir else []), *extra]
    total = 0
    for folder in folders:
        applied = migrate.migrate(admin, folder)
        total += len(applied)
        for m in applied:
            click.echo(f"applied V{m.version} {m.description} ({folder})")
    click.echo(f"database is up to date ({total} applied now)")


@main.command("process")
@click.argument("blob")
def process_cmd(blob: str) -> None:
    """Process one blob in incoming/ now (the manual trigger). BLOB is its path in the
    container (incoming/[<dataset>/]<file>), the path `upload` printed (with the container
    in front), or the blob's URL. Exit status 1 if the blob does not exist or fails.

    \b
    Example:
      sales-etl process incoming/sales/mine.csv
    """
    from sales_etl.flow.manual import as_recorded, process

    settings = context.settings()
    rec = process(settings, blob)
    _print_runs([as_recorded(settings, rec)])
    if rec.status == "failed":
        raise click.ClickException(_shown(f"{rec.blob_path}: failed ({rec.reason_code}): {rec.error}"))


@main.command("load")
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@click.option("--dataset", default="sales", show_default=True, help="Dataset of the files.")
def load_cmd(files: tuple[Path, ...], dataset: str) -> None:
    """Load local CSV files straight into the database (backfills). Same validation, ledger
    and rejects as the blob path; rejects are written beside each file. A progress bar when
    attached to a terminal.

    \b
    Example:
      sales-etl load data/mine.csv --dataset sales
    """
    from sales_etl.core.errors import EtlError
    from sales_etl.flow.pipeline import load_file

    settings = context.settings()
    spec = get_dataset(dataset, settings.datasets_dir)
    failed = 0
    for path in files:
        bar = context.progress(None, path.name)
        try:
            rec = load_file(path, spec, settings, progress=bar.update if bar is not None else None)
        except EtlError as exc:
            failed += 1
            click.echo(f"{path}: failed ({exc.code}): {' '.join(exc.message.split())}", err=True)
            continue
        finally:
            if bar is not None:
                bar.close()
        _print_runs([rec.as_dict()])
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} file(s) failed")


@main.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", default=None, help="Upload under incoming/<dataset>/ (a dataset this app knows).")
@click.option("--name", default=None, help="Blob file name [default: the file's name].")
def upload_cmd(file: Path, dataset: str | None, name: str | None) -> None:
    """Upload a file to incoming/ in the container (the blob trigger takes it from there).

    \b
    Example:
      sales-etl upload data/mine.csv --dataset sales
    """
    settings = context.settings()
    if dataset is not None:
        get_dataset(dataset, settings.datasets_dir)  # an unknown dataset is refused here
    context.storage_ready(settings)
    storage.init_storage(settings)
    blob = storage.upload(storage.container_client(settings), file, dataset=dataset, name=name)
    click.echo(f"uploaded {file} to {settings.container}/{blob}")
    if context.uses_local_stack(settings):
        click.echo(
            f"local stack: unless `func start` runs, load it with `sales-etl process {shlex.quote(blob)}`"
        )


@main.command("init-storage")
def init_storage_cmd() -> None:
    """Create the container (idempotent).

    \b
    Example:
      sales-etl init-storage
    """
    settings = context.settings()
    context.storage_ready(settings)
    created = storage.init_storage(settings)
    click.echo(f"container {settings.container} {'created' if created else 'exists'}")


@main.command("runs")
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
        _print_runs(rows)


def _shown(text: str) -> str:
    """``text`` with control characters escaped (a blob name is chosen by whoever uploads
    it: no escape sequence of it reaches the operator's terminal, no newline breaks a row)."""
    return "".join(
        c if c.isprintable() or c == " " else f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}"
        for c in text
    )


def _print_runs(rows: list[dict[str, Any]]) -> None:
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
        shown = "-" if secs is None else f"{float(secs):.2f}"
        click.echo(
            f"{r.get('run_id') or '-':>5} {r.get('status') or '':8} "
            f"{r.get('rows_read') or 0:>8} {r.get('rows_loaded') or 0:>8} "
            f"{r.get('rows_duplicate') or 0:>8} {r.get('rows_rejected') or 0:>8} "
            f"{shown:>6}  {_shown(detail)}"
        )


def _local_hint(settings: Settings, blobs: list[str]) -> None:
    if blobs and context.uses_local_stack(settings):
        click.echo(
            "local stack: unless `func start` runs, nothing takes them from incoming/; load each with:"
        )
        for blob in blobs:
            click.echo(f"  sales-etl process {shlex.quote(blob)}")


@main.command("retry-failed")
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
    _local_hint(settings, report.retried)


@main.command("requeue")
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
    _local_hint(settings, [item.target for item in report.moved])
    if report.unrecorded:
        raise click.ClickException(
            f"moved {len(report.moved)} blob(s), but the ledger could not record it: {report.unrecorded}"
        )
    if report.unmatched:
        raise click.ClickException(
            "no blob in failed/ or deadletter/ matches: " + ", ".join(report.unmatched)
        )


# The keys, datasets and health commands (cli_admin), registered on the same group.
for _command in ADMIN_COMMANDS:
    main.add_command(_command)
