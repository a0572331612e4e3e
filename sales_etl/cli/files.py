"""The file commands: ``process`` (the manual trigger), ``load`` (local files, backfills),
``upload``, ``init-storage`` and ``migrate``. Thin: the work is in flow/, storage/ and db/."""

from __future__ import annotations

import shlex
from pathlib import Path

import click

from sales_etl.cli import context
from sales_etl.cli.runs import print_runs, shown
from sales_etl.datasets.reader import get_dataset
from sales_etl.db import migrate
from sales_etl.storage import container as storage


@click.command("migrate")
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


@click.command("process")
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
    print_runs([as_recorded(settings, rec)])
    if rec.status == "failed":
        raise click.ClickException(shown(f"{rec.blob_path}: failed ({rec.reason_code}): {rec.error}"))


@click.command("load")
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
        print_runs([rec.as_dict()])
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} file(s) failed")


@click.command("upload")
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


@click.command("init-storage")
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


FILE_COMMANDS = (migrate_cmd, process_cmd, load_cmd, upload_cmd, init_storage_cmd)
