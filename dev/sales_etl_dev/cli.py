"""``sales-etl dev ...`` and ``sales-etl demo``: the local stack's commands (registered on
the main group in sales_etl/cli/commands.py, whose error handling covers them)."""

from __future__ import annotations

import base64
import secrets
from datetime import datetime
from pathlib import Path

import click

from sales_etl.config.settings import project_root

from . import devstack


@click.group("dev")
def dev_group() -> None:
    """The local stack: Azurite and a private PostgreSQL (TLS where the build supports it).

    \b
    Example:
      sales-etl dev up
    """


@dev_group.command("up")
def dev_up() -> None:
    """Start the local stack (or reuse the running one) and apply the migrations.

    \b
    Example:
      sales-etl dev up
    """
    state = devstack.up()  # migrates too
    _print_state(state)


@dev_group.command("down")
def dev_down() -> None:
    """Stop the local stack (its data stays in .devstack/).

    \b
    Example:
      sales-etl dev down
    """
    click.echo("stopped" if devstack.down() else "not running")


@dev_group.command("status")
def dev_status() -> None:
    """Say whether the local stack runs, and where; exit status 1 if it does not.

    \b
    Example:
      sales-etl dev status
    """
    state = devstack.read_state()
    if state is None or not devstack.is_running(state):
        raise click.ClickException("the local stack is not running (start it with: sales-etl dev up)")
    _print_state(state)


@dev_group.command("func-settings")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="where to write it (default: local.settings.json in the checkout)",
)
@click.option("--force", is_flag=True, help="replace an existing file")
def dev_func_settings(output: Path | None, force: bool) -> None:
    """Write local.settings.json for the running stack, for `func start` (git-ignored).

    \b
    Example:
      sales-etl dev func-settings && func start
    """
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
    """Print the running stack's settings as shell export lines.

    \b
    Example:
      eval "$(sales-etl dev env)" && psql -c 'select count(*) from sales'
    """
    state = devstack.read_state()
    if state is None or not devstack.is_running(state):
        raise click.ClickException("the local stack is not running (sales-etl dev up)")
    env = state.env()
    for key, value in env.items():
        click.echo(f"export {key}='{value}'")
    if state.pg_tls:
        click.echo(
            f"export PGHOST={state.pg_host} PGPORT={state.pg_port} "
            f"PGUSER={state.pg_user} PGDATABASE={devstack.DB_NAME} "
            f"PGSSLMODE=verify-full PGSSLROOTCERT='{state.ca_file}' "
            f"PGPASSWORD='{state.admin_password}'"
        )


@dev_group.command("compose-env")
@click.option("--force", is_flag=True, help="Replace an existing .env.")
def dev_compose_env(force: bool) -> None:
    """Write .env (generated secrets) and certs/generated/ (a CA and a server certificate)
    for docker-compose.yml. Both are git-ignored.

    \b
    Example:
      sales-etl dev compose-env && docker compose up --build
    """
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
    pg = (
        f"PostgreSQL ({Path(state.pg_bin).parent.name}) on 127.0.0.1:{state.pg_port}, TLS on (verify-full)"
        if state.pg_tls
        else f"PostgreSQL (embedded, no SSL in this build) on unix socket {state.pg_host}"
    )
    click.echo(f"Azurite blob :{state.blob_port} queue :{state.queue_port} table :{state.table_port}; {pg}")
    click.echo('settings: eval "$(sales-etl dev env)"')


@click.command("demo")
@click.option("--rows", type=click.IntRange(1), default=100_000, show_default=True)
@click.option("--bad-rows", type=click.IntRange(0), default=40, show_default=True)
def demo_cmd(rows: int, bad_rows: int) -> None:
    """The whole flow on the local stack: start it, generate two files, upload them to
    incoming/, run the blob-triggered function on each as the host would, and print a
    summary. Run it twice: the second run loads nothing new.

    \b
    Example:
      sales-etl demo --rows 10000
    """
    from .demo import run_demo

    run_demo(rows=rows, bad_rows=bad_rows, echo=click.echo)


@click.command("generate")
@click.option("--rows", type=click.IntRange(0), default=100, show_default=True)
@click.option(
    "--start",
    type=click.DateTime(["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]),
    default="2025-10-09 08:00:00",
    show_default=True,
)
@click.option(
    "--end",
    type=click.DateTime(["%Y-%m-%d %H:%M:%S", "%Y-%m-%d"]),
    default="2025-10-12 22:00:00",
    show_default=True,
)
@click.option(
    "--bad-rows",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="Rows that break one rule each (to see the rejects).",
)
@click.option("--seed", type=int, default=None, help="Same seed, same file.")
@click.option("--customers", type=click.IntRange(1), default=5, show_default=True)
@click.option("--products", type=click.IntRange(1), default=8, show_default=True)
@click.option("--stores", type=click.IntRange(1), default=5, show_default=True)
@click.option(
    "--model",
    is_flag=True,
    help="Write consistent files for all five datasets (suppliers, products, "
    "customers, stores, sales) into the --out folder.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output file [default: data/sales_<timestamp>.csv], or folder with --model.",
)
def generate_cmd(
    rows: int,
    start: datetime,
    end: datetime,
    bad_rows: int,
    seed: int | None,
    customers: int,
    products: int,
    stores: int,
    model: bool,
    out: Path | None,
) -> None:
    """Generate a mock sales CSV file, as the original design's generator did (or, with
    --model, one file per dataset of the example model).

    \b
    Example:
      sales-etl generate --rows 1000 --bad-rows 5 --out data/mine.csv
      sales-etl generate --model --rows 500 --out data/model
    """
    from .generate import default_name, generate, generate_model

    if model:
        folder = out or Path("data") / "model"
        paths = generate_model(
            folder,
            sales_rows=rows,
            customers=customers,
            products=products,
            stores=stores,
            seed=seed if seed is not None else secrets.randbelow(2**31),
        )
        for name, file in paths.items():
            click.echo(f"{name}: {file}")
        click.echo("upload each with: sales-etl upload FILE --dataset NAME")
        return
    path = out or Path("data") / default_name()
    try:
        result = generate(
            path,
            rows,
            bad_rows=bad_rows,
            seed=seed if seed is not None else secrets.randbelow(2**31),
            start=start,
            end=end,
            customers=customers,
            products=products,
            stores=stores,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc
    click.echo(f"wrote {result.rows} rows ({len(result.bad)} bad) to {result.path}")
