"""Check every `az` command in docs/operations.md against the Azure CLI's own `--help`.

    pip install azure-cli            # heavy (a few hundred MB); a separate venv is fine
    python docs/check_az_commands.py [--az PATH]

For each command: the command group exists, every flag is one that `az <group> --help` lists,
and a literal value given to a flag with "Allowed values" is one of them. Shell variables and
<placeholders> are not checked. Exit status 1 with a list of problems, 0 when all hold.
"""

from __future__ import annotations

import argparse
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

GUIDE = Path(__file__).resolve().parent / "operations.md"
_FENCE = re.compile(r"```bash\n(.*?)```", re.S)
_FLAG_LINE = re.compile(r"^\s{4}((?:--?[A-Za-z0-9][\w-]*)(?:\s+--?[A-Za-z0-9][\w-]*)*)\s+(?:\[[^\]]*\]\s*)*:")


@dataclass
class Command:
    path: tuple[str, ...]
    flags: list[tuple[str, str | None]] = field(default_factory=list)
    text: str = ""


def _substitutions(text: str) -> tuple[str, list[str]]:
    """Replace each innermost $(...) by a placeholder; return the text and the inner commands."""
    inner: list[str] = []
    pattern = re.compile(r"\$\(([^()]*)\)")
    while True:
        match = pattern.search(text)
        if match is None:
            return text, inner
        inner.append(match.group(1))
        text = text[: match.start()] + "SUBST" + text[match.end() :]


def commands(markdown: str) -> list[Command]:
    found: list[Command] = []
    for block in _FENCE.findall(markdown):
        joined = re.sub(r"\\\n\s*", " ", block)
        for line in joined.splitlines():
            line = line.split(" #", 1)[0].strip() if not line.lstrip().startswith("#") else ""
            if not line:
                continue
            outer, inner = _substitutions(line)
            for candidate in [outer, *inner]:
                for part in re.split(r"\s*(?:&&|\|\||;|\|)\s*", candidate):
                    part = re.sub(r"^[A-Z_]+=(?:SUBST|\S+)\s*", "", part.strip())
                    if part.startswith("az "):
                        found.append(_parse(part))
    return found


def _parse(text: str) -> Command:
    tokens = shlex.split(text)[1:]
    path: list[str] = []
    while tokens and not tokens[0].startswith("-"):
        path.append(tokens.pop(0))
    cmd = Command(tuple(path), text=text)
    while tokens:
        token = tokens.pop(0)
        if token.startswith("-"):
            value = tokens[0] if tokens and not tokens[0].startswith("-") else None
            cmd.flags.append((token, value))
    return cmd


def _help(az: str, path: tuple[str, ...]) -> tuple[set[str], dict[str, list[str]]] | None:
    result = subprocess.run([az, *path, "--help"], capture_output=True, text=True, check=False)
    if result.returncode != 0 or "Arguments" not in result.stdout:
        return None
    flags: set[str] = set()
    allowed: dict[str, list[str]] = {}
    lines = result.stdout.splitlines()
    for i, line in enumerate(lines):
        match = _FLAG_LINE.match(line)
        if not match:
            continue
        names = match.group(1).split()
        flags.update(names)
        desc = line[match.end() :]
        j = i + 1
        while j < len(lines) and lines[j].startswith(" " * 20) and not _FLAG_LINE.match(lines[j]):
            desc += " " + lines[j].strip()
            j += 1
        values = re.search(r"Allowed values:\s*([^.]+(?:\.\d[^.]*)?)\.", desc)
        if values:
            for name in names:
                allowed[name] = [v.strip() for v in values.group(1).split(",")]
    return flags, allowed


def check(az: str, markdown: str) -> list[str]:
    problems: list[str] = []
    cache: dict[tuple[str, ...], tuple[set[str], dict[str, list[str]]] | None] = {}
    for cmd in commands(markdown):
        if cmd.path not in cache:
            cache[cmd.path] = _help(az, cmd.path)
        known = cache[cmd.path]
        if known is None:
            problems.append(f"az {' '.join(cmd.path)}: not a command of this Azure CLI")
            continue
        flags, allowed = known
        for flag, value in cmd.flags:
            if flag not in flags:
                problems.append(f"az {' '.join(cmd.path)}: unknown flag {flag}")
            elif (
                value
                and flag in allowed
                and not value.startswith(("$", "<", "SUBST"))
                and value not in allowed[flag]
            ):
                problems.append(f"az {' '.join(cmd.path)} {flag} {value}: allowed {allowed[flag]}")
    return problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--az", default=shutil.which("az"), help="the az executable")
    args = parser.parse_args()
    if not args.az:
        print("az not found: pip install azure-cli (or pass --az PATH)", file=sys.stderr)
        return 2
    version = subprocess.run(
        [args.az, "version", "-o", "tsv", "--query", '"azure-cli"'],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    markdown = GUIDE.read_text()
    problems = check(args.az, markdown)
    n = len(commands(markdown))
    print(f"azure-cli {version}: {n} az commands in {GUIDE.name}, {len(problems)} problem(s)")
    for problem in problems:
        print("  " + problem)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
