import re
from dataclasses import dataclass, field
from pathlib import Path

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


# ------------------------------------------------------------- docs/cli.md against the group

CLI_PAGE = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
_CELL_SPLIT = re.compile(r"(?<!\\)\|")
_USAGE_TOKEN = re.compile(r"\[|\]|\||/|[^\s\[\]|/]+")
_LONG_OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
_SUBCOMMAND = re.compile(r"[a-z][a-z0-9-]*")
_DEFAULT_SAID = re.compile(r"`(--[a-z][a-z0-9-]*)` defaults to `?([^`,;)\s]+)`?")


def _command(path: tuple[str, ...]) -> click.Command | None:
    cmd: click.Command | None = main
    for part in path:
        if not isinstance(cmd, click.Group):
            return None
        cmd = cmd.get_command(click.Context(cmd), part)
    return cmd


def long_options(cmd: click.Command) -> dict[str, click.Option]:
    """A command's options by each of their ``--long`` names (``--help`` is click's own)."""
    return {
        name: param
        for param in cmd.params
        if isinstance(param, click.Option) and not param.hidden
        for name in (*param.opts, *param.secondary_opts)
        if name.startswith("--")
    }


@dataclass
class Row:
    usage: str  # the first cell's command line, e.g. "generate [--rows N] ..."
    text: str  # the whole row
    paths: list[tuple[str, ...]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def command_rows(page: str) -> list[Row]:
    """The rows of the page's command table, each with the command paths its first cell
    names (``dev up / down`` names two) and what in it names no command."""
    start = page.index("\n## Commands\n")
    end = page.find("\n## ", start + 1)
    rows = []
    for line in page[start : end if end != -1 else len(page)].splitlines():
        if not line.startswith("| `"):
            continue
        cell = _CELL_SPLIT.split(line)[1].strip()
        usage = cell.strip("`").replace("\\|", "|")
        rows.append(_resolve(Row(usage, line.replace("\\|", "|"))))
    return rows


def _resolve(row: Row) -> Row:
    tokens = _USAGE_TOKEN.findall(row.usage)
    path: tuple[str, ...] = ()
    cmd: click.Command | None = main
    i = 0
    while i < len(tokens) and isinstance(cmd, click.Group) and _SUBCOMMAND.fullmatch(tokens[i]):
        sub = cmd.get_command(click.Context(cmd), tokens[i])
        if sub is None:
            row.problems.append(f"`{row.usage}`: no command {' '.join((*path, tokens[i]))!r}")
            return row
        path, cmd, i = (*path, tokens[i]), sub, i + 1
    if not path:
        row.problems.append(f"`{row.usage}`: names no command")
        return row
    row.paths.append(path)
    while i + 1 < len(tokens) and tokens[i] == "/" and len(path) > 1:  # dev up / down / ...
        sibling = (*path[:-1], tokens[i + 1])
        if _command(sibling) is None:
            row.problems.append(f"`{row.usage}`: no command {' '.join(sibling)!r}")
        else:
            row.paths.append(sibling)
        i += 2
    return row


def page_problems(page: str) -> list[str]:
    """What docs/cli.md's command table does not say as the group does: a command of the
    group (at any depth) the table does not name; an option of a command its rows do not
    name; a row naming a command or an option that does not exist; a value option shown as
    mandatory (outside ``[...]``) that is not required. The group's own options are named
    on the page."""
    rows = command_rows(page)
    out = [problem for row in rows for problem in row.problems]
    named = {path[:depth] for row in rows for path in row.paths for depth in range(1, len(path) + 1)}
    for path in all_commands(main):
        cmd = _command(path)
        assert cmd is not None
        if cmd.hidden:
            continue
        if path not in named:
            out.append(f"{' '.join(path)}: not named in the command table")
            continue
        texts = [row.text for row in rows if path in row.paths]
        out.extend(
            f"{' '.join(path)}: {name} not named in its rows"
            for name in long_options(cmd)
            if texts and not any(re.search(rf"(?<![\w-]){name}(?![\w-])", t) for t in texts)
        )
    anywhere = {name for path in all_commands(main) for name in long_options(_command(path) or main)}
    for row in rows:
        for path in row.paths:
            cmd = _command(path)
            assert cmd is not None
            options = long_options(cmd)
            # the usage cell names this command's options; the text may name another's
            # (`runs --blob`), never one no command has
            for name in sorted(set(_LONG_OPTION.findall(row.usage)) - set(options)):
                out.append(f"`{row.usage}`: {' '.join(path)} has no option {name}")
            in_text = set(_LONG_OPTION.findall(row.text)) - set(_LONG_OPTION.findall(row.usage))
            for name in sorted(in_text - set(options) - anywhere):
                out.append(f"`{row.usage}`: no command has an option {name}")
            depth, shown_required = 0, set()
            for token in _USAGE_TOKEN.findall(row.usage):
                depth += {"[": 1, "]": -1}.get(token, 0)
                option = options.get(token)
                if depth == 0 and option is not None:
                    shown_required.add(option.name)
                    if not option.is_flag and not option.required:
                        out.append(f"`{row.usage}`: {token} is shown as mandatory but is optional")
            out.extend(
                f"`{row.usage}`: {option.opts[0]} is required but shown as optional"
                for option in options.values()
                if option.required and option.name not in shown_required and option.opts[0] in row.usage
            )
            for name, said in _DEFAULT_SAID.findall(row.text):
                option = options.get(name)
                if option is not None and str(option.default) != said:
                    out.append(f"`{row.usage}`: {name} defaults to {option.default!r}, not {said}")
    for path in [(), *all_commands(main)]:
        cmd = _command(path)
        assert cmd is not None
        out.extend(
            f"{' '.join(('sales-etl', *path))}: its short option {short} is not named on the page"
            for param in cmd.params
            if isinstance(param, click.Option) and not param.hidden
            for short in param.opts
            if not short.startswith("--") and not re.search(rf"(?<![\w-]){short}(?![\w-])", page)
        )
    out.extend(
        f"sales-etl {name}: not named on the page"
        for name in long_options(main)
        if not re.search(rf"(?<![\w-]){name}(?![\w-])", page)
    )
    return out


def test_the_command_line_page_names_every_command_and_option() -> None:
    assert page_problems(CLI_PAGE.read_text()) == []


def test_the_command_table_is_read() -> None:
    """(The comparison cannot pass by reading nothing: every row names a command, the
    groups' subcommands included, and a planted defect of each kind is found.)"""
    page = CLI_PAGE.read_text()
    rows = command_rows(page)
    assert rows and all(row.paths for row in rows)
    paths = {path for row in rows for path in row.paths}
    assert {("dev", "up"), ("dev", "env"), ("keys", "generate"), ("datasets", "check"), ("migrate",)} <= paths
    assert {" ".join(p) for p in all_commands(main)} >= {
        "dev func-settings",
        "dev compose-env",
        "keys generate",
    }
    planted = (
        re.sub(
            r"^\| `dev compose-env .*$", "| `dev compose-env` | `.env` for docker-compose |", page, flags=re.M
        )
        .replace("| `doctor` |", "| `doctor [--fix]` |")
        .replace("| `keys generate` |", "| `keys generate` |\n| `keys frobnicate` |\n| `frobnicate` |")
        .replace("`generate [--rows N]", "`generate --rows N")
        .replace("| `init-storage` |", "| `init-storaje` |")
        .replace("dev up / down / status / env", "dev up / down / status / envs")
        .replace("`--rows` defaults to 100", "`--rows` defaults to 1000")
        .replace("sales-etl -v", "sales-etl")
        .replace(
            "| upload to `incoming/[<dataset>/]`;", "| upload (`runs --blob X` shows it; no `--nosuch`);"
        )
    )
    assert sorted(page_problems(planted)) == sorted(
        [
            "dev compose-env: --force not named in its rows",
            "`doctor [--fix]`: doctor has no option --fix",
            "`keys frobnicate`: no command 'keys frobnicate'",
            "`frobnicate`: no command 'frobnicate'",
            "init-storage: not named in the command table",
            "`init-storaje`: no command 'init-storaje'",
            "`dev up / down / status / envs`: no command 'dev envs'",
            "dev env: not named in the command table",
            "`generate --rows N [--start ..] [--end ..] [--bad-rows K] [--seed S] [--customers N] "
            "[--products N] [--stores N] [--out ..]`: --rows is shown as mandatory but is optional",
            "`generate --rows N [--start ..] [--end ..] [--bad-rows K] [--seed S] [--customers N] "
            "[--products N] [--stores N] [--out ..]`: --rows defaults to 100, not 1000",
            "sales-etl: its short option -v is not named on the page",
            "`upload FILE [--dataset NAME] [--name ..]`: no command has an option --nosuch",
        ]
    ), page_problems(planted)
