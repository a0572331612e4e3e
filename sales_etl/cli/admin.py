"""``sales-etl`` commands for an operator who holds the keys or checks the installation:
``show`` (decrypt one row), ``datasets`` (list, check), ``rotate-keys``, ``doctor`` and
``keys generate``. Registered on the main group by ``commands`` (whose error handling covers
them); each a thin layer over the package."""

from __future__ import annotations

import base64
import secrets
import sys
from typing import Any

import click

from sales_etl.cli import context
from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import get_dataset, load_datasets, scan_datasets


@click.command("show")
@click.argument("key")
@click.option("--dataset", default="sales", show_default=True)
def show_cmd(key: str, dataset: str) -> None:
    """Decrypt and print one row, found by its business key (a sensitive key through its
    blind index), for an operator who holds the keys. Exit status 1 if no row has it.

    \b
    Example:
      sales-etl show TX-000001
      sales-etl show --dataset customers CUST-001
    """
    from sales_etl.db.lookup import fetch_decrypted

    settings = context.settings()
    row = fetch_decrypted(settings, get_dataset(dataset, settings.datasets_dir), key)
    if row is None:
        raise click.ClickException(f"no {dataset} row with key {key!r}")
    for name, value in row.items():
        click.echo(f"{name:>18}: {value}")


@click.group("datasets", invoke_without_command=True)
@click.pass_context
def datasets_cmd(ctx: click.Context) -> None:
    """List the datasets this app knows (shipped, and from DATASETS_DIR).

    \b
    Example:
      sales-etl datasets
    """
    if ctx.invoked_subcommand is not None:
        return
    good, broken = scan_datasets(context.settings().datasets_dir)  # a broken file hides no other
    for name, ds in sorted(good.items()):
        sensitive = ", ".join(c.name for c in ds.sensitive) or "none"
        click.echo(
            f"{name}: table {ds.table}, key {', '.join(ds.business_key)}, "
            f"{ds.write_mode}, {len(ds.columns)} columns, sensitive: {sensitive} "
            f"({ds.source})"
        )
    for name, error in sorted(broken.items()):
        click.echo(f"{name}: BROKEN: {error}")
    if broken:
        raise click.ClickException(f"{len(broken)} dataset file(s) broken")


@datasets_cmd.command("check")
def datasets_check_cmd() -> None:
    """Check every dataset against the database: table, columns and types, unique key.

    \b
    Example:
      sales-etl datasets check
    """
    from sales_etl.db.dbcheck import check

    settings = context.settings()
    good, broken = scan_datasets(settings.datasets_dir)  # each file on its own
    results = check(settings.require_database(), list(good.values())) if good else {}
    results.update({name: [error] for name, error in broken.items()})
    bad = 0
    for name, problems in sorted(results.items()):
        click.echo(f"{name}: {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            click.echo(f"  - {problem}")
        bad += bool(problems)
    if bad:
        raise click.ClickException(f"{bad} dataset(s) do not match the database")


@click.command("rotate-keys")
@click.option(
    "--batch", type=click.IntRange(1), default=1000, show_default=True, help="Rows per transaction."
)
@click.option("--dataset", "names", multiple=True, help="Only these datasets [default: all].")
@click.option(
    "--blind-index",
    is_flag=True,
    help="Re-hash every blind index under BLIND_INDEX_KEY_NEW (stop loads first).",
)
def rotate_cmd(batch: int, names: tuple[str, ...], blind_index: bool) -> None:
    """Re-encrypt every value not under the newest key of FERNET_KEYS (new key first, old
    keys after it), in batches, resumable; or re-hash the blind indexes. Prints how many
    rows are left; against the local stack, the stack keeps the keys used from then on.

    \b
    Example:
      FERNET_KEYS=<new>,<old> sales-etl rotate-keys --batch 5000
    """
    from sales_etl.db.rotate import rotate

    settings = context.settings()
    datasets = load_datasets(settings.datasets_dir)
    chosen = [get_dataset(n, settings.datasets_dir) for n in names] or list(datasets.values())
    new_blind = None
    if blind_index:
        if settings.blind_index_key_new is None:
            raise click.ClickException("BLIND_INDEX_KEY_NEW: not set (the key to re-hash with)")
        new_blind = base64.urlsafe_b64decode(settings.blind_index_key_new.get())
    tty = sys.stderr.isatty()

    def progress(r: Any) -> None:
        if tty:
            click.echo(
                f"\r{r.dataset}: {r.scanned:,} rows scanned, {r.rotated:,} rotated, {r.left:,} left",
                err=True,
                nl=False,
            )

    report = rotate(settings, chosen, batch=batch, blind_index_key=new_blind, progress=progress)
    if tty:
        click.echo("", err=True)
    for r in report.datasets:
        resumed = f", resumed after row {r.resumed_from}" if r.resumed_from else ""
        click.echo(
            f"{r.dataset}: {r.scanned:,} rows scanned, {r.rotated:,} rotated in "
            f"{r.batches} batch(es){resumed}, {r.left:,} left"
        )
    click.echo(f"{report.rotated:,} value(s) rotated, {report.left:,} left")
    if report.left == 0 and context.uses_local_stack(settings):
        _follow_rotation(settings, blind_index)


def _follow_rotation(settings: Settings, blind_index: bool) -> None:
    """The local stack keeps the keys a finished rotation used (else its commands would
    fall back to the old key in .devstack/)."""
    from sales_etl_dev import devstack  # the local stack is in use: its package is here

    state = devstack.read_state()
    if state is None:
        return
    if blind_index:
        assert settings.blind_index_key_new is not None
        changed = devstack.adopt_keys(state, blind_index_key=settings.blind_index_key_new.get())
    else:
        changed = devstack.adopt_keys(state, fernet_keys=",".join(k.get() for k in settings.fernet_keys))
    if changed:
        click.echo(
            f"the local stack now uses these keys ({', '.join(changed)} in "
            f"{state.home}); `sales-etl dev env` prints them"
        )


@click.command("doctor")
def doctor_cmd() -> None:
    """Check settings, storage, database, TLS, migrations, keys and bindings; print each
    check with its fix; exit status 1 if any fails.

    \b
    Example:
      sales-etl doctor
    """
    from sales_etl.cli.doctor import run

    stack = context.stack()
    checks = run(fallback=stack.env, missing_hint=stack.hint())
    width = max(len(c.name) for c in checks)
    for c in checks:
        click.echo(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            click.echo(f"      {'':<{width}}  fix: {c.fix}")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    click.echo("all checks passed")


@click.group("keys")
def keys_group() -> None:
    """Encryption keys.

    \b
    Example:
      sales-etl keys generate
    """


@keys_group.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key and a new blind-index key as export lines.

    \b
    Example:
      sales-etl keys generate
    """
    click.echo(f"export FERNET_KEYS={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")
    click.echo(f"export BLIND_INDEX_KEY={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")


ADMIN_COMMANDS = (show_cmd, datasets_cmd, rotate_cmd, doctor_cmd, keys_group)
