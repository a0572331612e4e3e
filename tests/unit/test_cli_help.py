import click
import pytest
from click.testing import CliRunner

from sales_etl.cli.commands import main


def all_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command, with those installed plugins add (the dev package's) as a user sees them."""
    out = []
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None, name
        out.append((*prefix, name))
        if isinstance(cmd, click.Group):
            out.extend(all_commands(cmd, (*prefix, name)))
    return out


@pytest.mark.parametrize("path", all_commands(main))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output
    cmd: click.Command | None = main
    for part in path:
        assert isinstance(cmd, click.Group)
        cmd = cmd.get_command(click.Context(cmd), part)
    assert cmd is not None
    assert cmd.help, f"{' '.join(path)} has no help text"
    # an example, as a command line starting with sales-etl, in the rendered help
    _, _, example = result.output.partition("Example:\n")
    assert example, f"{' '.join(path)} --help has no example:\n{result.output}"
    first = example.splitlines()[0].strip()
    assert "sales-etl " in first and path[-1] in first, first


def test_top_level_help_documents_exit_status() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert "Exit status: 0 success; 1 the command failed" in " ".join(result.output.split())


def test_expected_commands_exist() -> None:
    names = {" ".join(p) for p in all_commands(main)}
    assert names >= {
        "migrate",
        "process",
        "load",
        "generate",
        "upload",
        "init-storage",
        "runs",
        "retry-failed",
        "show",
        "dev",
        "dev up",
        "dev down",
        "dev status",
        "dev env",
        "demo",
        "datasets",
        "keys generate",
        "requeue",
        "rotate-keys",
        "doctor",
        "datasets check",
        "dev compose-env",
    }


def test_bad_option_exits_non_zero() -> None:
    result = CliRunner().invoke(main, ["generate", "--rows", "-1"])
    assert result.exit_code != 0 and "rows" in result.output
