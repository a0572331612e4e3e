"""``sales-etl``: a thin command line over the package. Every command has ``--help``.

Settings come from the environment (see the README's settings table); when neither a
database nor a storage setting is exported and the local dev stack is running, its
settings are used, so every command works right after ``make demo``.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
from collections.abc import Callable
from datetime import datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from . import __version__, devstack, ledger, migrate, pipeline, retry, storage
from .datasets import get_dataset, load_datasets
from .db import connect
from .errors import EtlError
from .settings import Settings, load_settings, project_root

F = TypeVar("F", bound=Callable[..., Any])


def _settings() -> Settings:
    state = devstack.read_state()
    fallback = state.env() if state is not None and devstack.is_running(state) else None
    return load_settings(fallback=fallback)


def _friendly(fn: F) -> F:
    """Typed errors end the command with exit status 1 and one line naming the reason."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EtlError as exc:
            raise click.ClickException(" ".join(exc.message.split())) from exc

    return wrapper  # type: ignore[return-value]


def _progress(total: int | None, desc: str) -> Any:
    if not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, unit=" rows", desc=desc, leave=False, file=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sales-etl")
@click.option("-v", "--verbose", is_flag=True, help="Log every step (INFO level).")
def main(verbose: bool) -> None:
    """Load sales CSV files from Azure Blob Storage into PostgreSQL, exactly once."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)


@main.command("migrate")
@click.option("--dir", "extra", type=click.Path(exists=True, file_okay=False, path_type=Path),
              multiple=True, help="Another folder of V<n>__*.sql files, applied after the "
              "shipped ones (also: MIGRATIONS_DIR).")
@_friendly
def migrate_cmd(extra: tuple[Path, ...]) -> None:
    """Apply pending migrations (migrations/V<n>__*.sql); a no-op when up to date."""
    settings = _settings()
    admin = settings.require_admin_database()
    folders = [migrate.default_dir(), *([settings.migrations_dir] if settings.migrations_dir
                                        else []), *extra]
    total = 0
    for folder in folders:
        applied = migrate.migrate(admin, folder)
        total += len(applied)
        for m in applied:
            click.echo(f"applied V{m.version} {m.description} ({folder})")
    click.echo(f"database is up to date ({total} applied now)")


@main.command("process")
@click.argument("blob")
@_friendly
def process_cmd(blob: str) -> None:
    """Process one blob now (the manual trigger), e.g. incoming/sales/file.csv."""
    settings = _settings()
    cc = storage.container_client(settings)
    rec = pipeline.process_blob(cc.get_blob_client(blob), settings, trigger="cli")
    _print_runs([rec.as_dict()])
    if rec.status == "failed":
        raise click.ClickException(f"{blob}: {rec.error}")


@main.command("load")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", default="sales", show_default=True, help="Dataset of the files.")
@_friendly
def load_cmd(files: tuple[Path, ...], dataset: str) -> None:
    """Load local CSV files straight into the database (backfills). Same validation, ledger
    and rejects as the blob path; rejects are written beside each file."""
    settings = _settings()
    spec = get_dataset(dataset, settings.datasets_dir)
    failed = 0
    for path in files:
        bar = _progress(None, path.name)
        try:
            rec = pipeline.load_file(path, spec, settings, progress=bar.update if bar else None)
        except EtlError as exc:
            failed += 1
            click.echo(f"{path}: failed ({exc.kind}): {exc.message}", err=True)
            continue
        finally:
            if bar is not None:
                bar.close()
        _print_runs([rec.as_dict()])
    if failed:
        raise click.ClickException(f"{failed} of {len(files)} file(s) failed")


@main.command("generate")
@click.option("--rows", type=click.IntRange(0), default=100, show_default=True)
@click.option("--start", type=click.DateTime(["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]),
              default="2025-10-09 08:00:00", show_default=True)
@click.option("--end", type=click.DateTime(["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]),
              default="2025-10-12 22:00:00", show_default=True)
@click.option("--bad-rows", type=click.IntRange(0), default=0, show_default=True,
              help="Rows that break one rule each (to see the rejects).")
@click.option("--seed", type=int, default=None, help="Same seed, same file.")
@click.option("--customers", type=click.IntRange(1), default=5, show_default=True)
@click.option("--products", type=click.IntRange(1), default=8, show_default=True)
@click.option("--stores", type=click.IntRange(1), default=5, show_default=True)
@click.option("--model", is_flag=True,
              help="Write consistent files for all five datasets (suppliers, products, "
                   "customers, stores, sales) into the --out folder.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output file [default: data/sales_<timestamp>.csv], or folder with --model.")
def generate_cmd(rows: int, start: datetime, end: datetime, bad_rows: int, seed: int | None,
                 customers: int, products: int, stores: int, model: bool,
                 out: Path | None) -> None:
    """Generate a mock sales CSV file, as the original design's generator did."""
    from .generate import default_name, generate, generate_model

    if model:
        folder = out or Path("data") / "model"
        paths = generate_model(folder, sales_rows=rows, customers=customers,
                               products=products, stores=stores,
                               seed=seed if seed is not None else secrets.randbelow(2**31))
        for name, file in paths.items():
            click.echo(f"{name}: {file}")
        click.echo("upload each with: sales-etl upload FILE --dataset NAME")
        return
    path = out or Path("data") / default_name()
    try:
        result = generate(path, rows, bad_rows=bad_rows,
                          seed=seed if seed is not None else secrets.randbelow(2**31),
                          start=start, end=end, customers=customers, products=products,
                          stores=stores)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(f"wrote {result.rows} rows ({len(result.bad)} bad) to {result.path}")


@main.command("upload")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dataset", default=None, help="Upload under incoming/<dataset>/.")
@click.option("--name", default=None, help="Blob file name [default: the file's name].")
@_friendly
def upload_cmd(file: Path, dataset: str | None, name: str | None) -> None:
    """Upload a file to incoming/ in the container (the blob trigger takes it from there)."""
    settings = _settings()
    storage.init_storage(settings)
    blob = storage.upload(storage.container_client(settings), file, dataset=dataset, name=name)
    click.echo(f"uploaded {file} to {settings.container}/{blob}")


@main.command("init-storage")
@_friendly
def init_storage_cmd() -> None:
    """Create the container (idempotent)."""
    settings = _settings()
    created = storage.init_storage(settings)
    click.echo(f"container {settings.container} {'created' if created else 'exists'}")


@main.command("runs")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per run.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@click.option("--blob", default=None, help="Only runs whose blob path contains this text.")
@_friendly
def runs_cmd(as_json: bool, limit: int, blob: str | None) -> None:
    """Show the ledger: the latest file attempts, newest first."""
    conn = connect(_settings().require_database())
    try:
        rows = ledger.recent(conn, limit=limit, blob=blob)
    finally:
        conn.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps(row, default=str))
    else:
        _print_runs(rows)


def _print_runs(rows: list[dict[str, Any]]) -> None:
    click.echo(f"{'run':>5} {'status':8} {'read':>8} {'loaded':>8} {'dupes':>8} "
               f"{'rejected':>8} {'secs':>6}  file / reason")
    for r in rows:
        secs = r.get("seconds")
        detail = r.get("blob_path", "")
        if r.get("error"):
            detail += f"  [{r.get('reason_code')}] {r['error']}"
        if r.get("rejects_path"):
            detail += f"  rejects: {r['rejects_path']}"
        click.echo(f"{r.get('run_id') or '-':>5} {r.get('status', ''):8} {r.get('rows_read', 0):>8} "
                   f"{r.get('rows_loaded', 0):>8} {r.get('rows_duplicate', 0):>8} "
                   f"{r.get('rows_rejected', 0):>8} {secs if secs is None else f'{secs:.2f}':>6}  "
                   f"{detail}")


@main.command("retry-failed")
@click.option("--force", is_flag=True, help="Retry every failed blob now, data errors too.")
@_friendly
def retry_cmd(force: bool) -> None:
    """Run the retry sweep now: due blobs in failed/ back to incoming/, exhausted ones to
    deadletter/."""
    report = retry.sweep(_settings(), force=force)
    click.echo(f"retried {len(report.retried)}, dead-lettered {len(report.deadlettered)}, "
               f"waiting {len(report.waiting)}, kept {len(report.kept)} (data errors, "
               f"nothing changed), busy {len(report.busy)}")


@main.command("show")
@click.argument("transaction_id")
@click.option("--dataset", default="sales", show_default=True)
@_friendly
def show_cmd(transaction_id: str, dataset: str) -> None:
    """Decrypt and print one row, for an operator who holds the keys."""
    from .lookup import fetch_decrypted

    settings = _settings()
    row = fetch_decrypted(settings, get_dataset(dataset, settings.datasets_dir), transaction_id)
    if row is None:
        raise click.ClickException(f"no {dataset} row with key {transaction_id!r}")
    for key, value in row.items():
        click.echo(f"{key:>18}: {value}")


@main.group("datasets", invoke_without_command=True)
@click.pass_context
@_friendly
def datasets_cmd(ctx: click.Context) -> None:
    """List the datasets this app knows (shipped, and from DATASETS_DIR)."""
    if ctx.invoked_subcommand is not None:
        return
    for name, ds in sorted(load_datasets(_settings().datasets_dir).items()):
        sensitive = ", ".join(c.name for c in ds.sensitive) or "none"
        click.echo(f"{name}: table {ds.table}, key {', '.join(ds.business_key)}, "
                   f"{ds.write_mode}, {len(ds.columns)} columns, sensitive: {sensitive} "
                   f"({ds.source})")


@datasets_cmd.command("check")
@_friendly
def datasets_check_cmd() -> None:
    """Check every dataset against the database: table, columns and types, unique key."""
    from .dbcheck import check

    settings = _settings()
    results = check(settings.require_database(),
                    list(load_datasets(settings.datasets_dir).values()))
    bad = 0
    for name, problems in sorted(results.items()):
        click.echo(f"{name}: {'ok' if not problems else 'FAILED'}")
        for problem in problems:
            click.echo(f"  - {problem}")
        bad += bool(problems)
    if bad:
        raise click.ClickException(f"{bad} dataset(s) do not match the database")


@main.command("rotate-keys")
@click.option("--batch", type=click.IntRange(1), default=1000, show_default=True,
              help="Rows per transaction.")
@click.option("--dataset", "names", multiple=True, help="Only these datasets [default: all].")
@click.option("--blind-index", is_flag=True,
              help="Re-hash every blind index under BLIND_INDEX_KEY_NEW (stop loads first).")
@_friendly
def rotate_cmd(batch: int, names: tuple[str, ...], blind_index: bool) -> None:
    """Re-encrypt every value not under the newest key of FERNET_KEYS (new key first, old
    keys after it), in batches, resumable; or re-hash the blind indexes."""
    from .rotate import rotate

    settings = _settings()
    datasets = load_datasets(settings.datasets_dir)
    chosen = [get_dataset(n, settings.datasets_dir) for n in names] or list(datasets.values())
    new_blind = None
    if blind_index:
        if settings.blind_index_key_new is None:
            raise click.ClickException("BLIND_INDEX_KEY_NEW: not set (the key to re-hash with)")
        new_blind = base64.urlsafe_b64decode(settings.blind_index_key_new.get())

    def progress(r: Any) -> None:
        if sys.stderr.isatty():
            click.echo(f"\r{r.dataset}: {r.scanned:,} rows scanned, {r.rotated:,} rotated",
                       err=True, nl=False)

    report = rotate(settings, chosen, batch=batch, blind_index_key=new_blind, progress=progress)
    if sys.stderr.isatty():
        click.echo("", err=True)
    for r in report.datasets:
        resumed = f", resumed after row {r.resumed_from}" if r.resumed_from else ""
        click.echo(f"{r.dataset}: {r.scanned:,} rows scanned, {r.rotated:,} rotated in "
                   f"{r.batches} batch(es){resumed}")
    click.echo(f"{report.rotated:,} value(s) rotated")


@main.command("doctor")
def doctor_cmd() -> None:
    """Check settings, storage, database, TLS, migrations, keys and bindings; print each
    check with its fix; exit status 1 if any fails."""
    from .doctor import run

    state = devstack.read_state()
    fallback = state.env() if state is not None and devstack.is_running(state) else None
    checks = run(fallback=fallback)
    width = max(len(c.name) for c in checks)
    for c in checks:
        click.echo(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
        if not c.ok and c.fix:
            click.echo(f"      {'':<{width}}  fix: {c.fix}")
    failed = [c.name for c in checks if not c.ok]
    if failed:
        raise click.ClickException(f"{len(failed)} check(s) failed: {', '.join(failed)}")
    click.echo("all checks passed")


@main.group("keys")
def keys_group() -> None:
    """Encryption keys."""


@keys_group.command("generate")
def keys_generate() -> None:
    """Print a new Fernet key and a new blind-index key as export lines."""
    click.echo(f"export FERNET_KEYS={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")
    click.echo(f"export BLIND_INDEX_KEY={base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()}")


@main.group("dev")
def dev_group() -> None:
    """The local stack: Azurite and a private PostgreSQL (TLS where the build supports it)."""


@dev_group.command("up")
def dev_up() -> None:
    """Start the local stack (or reuse the running one) and apply the migrations."""
    state = devstack.up()  # migrates too
    _print_state(state)


@dev_group.command("down")
def dev_down() -> None:
    """Stop the local stack (its data stays in .devstack/)."""
    click.echo("stopped" if devstack.down() else "not running")


@dev_group.command("status")
def dev_status() -> None:
    """Say whether the local stack runs, and where."""
    state = devstack.read_state()
    if state is None or not devstack.is_running(state):
        click.echo("not running (start it with: sales-etl dev up)")
        raise SystemExit(1)
    _print_state(state)


@dev_group.command("func-settings")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="where to write it (default: local.settings.json in the checkout)")
@click.option("--force", is_flag=True, help="replace an existing file")
def dev_func_settings(output: Path | None, force: bool) -> None:
    """Write local.settings.json for the running stack, for `func start` (git-ignored)."""
    from . import funcsettings

    state = devstack.read_state()
    if state is None or not devstack.is_running(state):
        raise click.ClickException("the local stack is not running (sales-etl dev up)")
    target = output or project_root() / "local.settings.json"
    try:
        funcsettings.write(state, target, force=force)
    except FileExistsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"wrote {target}; now: func start")


@dev_group.command("env")
def dev_env() -> None:
    """Print the running stack's settings as shell export lines: eval "$(sales-etl dev env)"."""
    state = devstack.read_state()
    if state is None or not devstack.is_running(state):
        raise click.ClickException("the local stack is not running (sales-etl dev up)")
    env = state.env()
    for key, value in env.items():
        click.echo(f"export {key}='{value}'")
    if state.pg_tls:
        click.echo(f"export PGHOST={state.pg_host} PGPORT={state.pg_port} "
                   f"PGUSER={state.pg_user} PGDATABASE={devstack.DB_NAME} "
                   f"PGSSLMODE=verify-full PGSSLROOTCERT='{state.ca_file}' "
                   f"PGPASSWORD='{state.admin_password}'")


@dev_group.command("compose-env")
@click.option("--force", is_flag=True, help="Replace an existing .env.")
def dev_compose_env(force: bool) -> None:
    """Write .env (generated secrets) and certs/generated/ (a CA and a server certificate)
    for docker-compose.yml. Both are git-ignored."""
    root = project_root()
    env_file = root / ".env"
    if env_file.exists() and not force:
        click.echo(f"{env_file} exists (use --force to replace it)")
    else:
        values = {
            "POSTGRES_ADMIN_PASSWORD": secrets.token_urlsafe(24),
            "POSTGRES_LOADER_PASSWORD": secrets.token_urlsafe(24),
            "AZURITE_ACCOUNT_KEY": base64.b64encode(secrets.token_bytes(64)).decode(),
            "FERNET_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "BLIND_INDEX_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        }
        env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        env_file.chmod(0o600)
        click.echo(f"wrote {env_file}")
    devstack.make_certs(root / "certs" / "generated")
    click.echo(f"certificates in {root / 'certs' / 'generated'}; now: docker compose up --build")


def _print_state(state: devstack.StackState) -> None:
    pg = (f"PostgreSQL ({Path(state.pg_bin).parent.name}) on 127.0.0.1:{state.pg_port}, TLS on "
          "(verify-full)" if state.pg_tls else
          f"PostgreSQL (embedded, no SSL in this build) on unix socket {state.pg_host}")
    click.echo(f"Azurite blob :{state.blob_port} queue :{state.queue_port}; {pg}")
    click.echo("settings: eval \"$(sales-etl dev env)\"")


@main.command("demo")
@click.option("--rows", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--bad-rows", type=click.IntRange(0), default=40, show_default=True)
def demo_cmd(rows: int, bad_rows: int) -> None:
    """The whole flow on the local stack: start it, migrate, generate two files, upload
    them to incoming/, run the blob-triggered function on each as the host would, and
    print a summary. Run it twice: the second run loads nothing new."""
    from .demo import run_demo

    try:
        run_demo(rows=rows, bad_rows=bad_rows, echo=click.echo)
    except EtlError as exc:
        raise click.ClickException(" ".join(exc.message.split())) from exc
