"""``sales-etl``: a thin command line over the package, its group and what every command
shares (one-line errors, plugins); the commands are in ``files``, ``runs`` and ``admin``.
Every command has ``--help`` with an example.

Settings come from the environment (docs/settings.md); when neither a
database nor a storage setting is exported and the local dev stack is running, its
settings are used, so every command works right after ``make demo``.

Exit status: 0 success; 1 the command failed (one line on stderr saying why, never a
traceback: ``-v`` logs it); 2 the command line is wrong (unknown option, missing file).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
import sys
from typing import Any

import click

from sales_etl import __version__
from sales_etl.cli import context
from sales_etl.cli.admin import ADMIN_COMMANDS
from sales_etl.cli.files import FILE_COMMANDS
from sales_etl.cli.hints import one_line
from sales_etl.cli.runs import RUN_COMMANDS

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


# The commands, by the module that holds them, registered on the one group.
for _command in (*FILE_COMMANDS, *RUN_COMMANDS, *ADMIN_COMMANDS):
    main.add_command(_command)
