"""Build the deployment package exactly as ``func azure functionapp publish`` would.

Core Tools zips the project folder minus what it always leaves out (folders named ``.git`` or
``.vscode``; files named ``.funcignore``, ``.gitignore``, ``local.settings.json``,
``project.lock.json``, at any depth) and minus what ``.funcignore`` denies. Its ``.funcignore``
matcher is not git's: each pattern is a regular expression anchored at the start of the path
relative to the project root (``*`` is one path segment, ``**`` anything, no implicit ``**/``
prefix), so ``__pycache__/`` alone only matches the top-level folder. ``matcher`` reimplements
those rules (from Core Tools' GitIgnoreParser and FileSystemHelpers.GetLocalFiles).

``python -m tools.package`` (``make package``) writes ``dist/functionapp.zip`` from the tree as
git sees it (``git ls-files``, plus new files git does not ignore: nothing generated);
``--worktree`` lists what publishing the
working folder as it is would upload (generated files included), without writing anything.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath

ROOT = Path(__file__).resolve().parent.parent
ALWAYS_SKIPPED_DIRS = {".git", ".vscode"}
ALWAYS_SKIPPED_FILES = {".funcignore", ".gitignore", "local.settings.json", "project.lock.json"}
_SPECIAL = re.compile(r"[\-\[\]/{}()+?.\\^$|]")


def _pattern(glob: str) -> str:
    escaped = _SPECIAL.sub(lambda m: "\\" + m.group(0), glob)
    return escaped.replace("**", "(.+)").replace("*", "([^/]+)")


def _combined(patterns: list[str]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("^((" + ")|(".join(_pattern(p) for p in sorted(patterns)) + "))")


def matcher(funcignore: str) -> Callable[[str], bool]:
    """A predicate: True when Core Tools would upload the file at this relative path."""
    positive: list[str] = []
    negative: list[str] = []
    for raw in funcignore.split("\n"):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        target = negative if line.startswith("!") else positive
        line = line.removeprefix("!").removeprefix("/")
        target.append(line)
    deny, allow = _combined(positive), _combined(negative)

    def accepts(path: str) -> bool:
        parts = PurePosixPath(path).parts
        if any(p.lower() in ALWAYS_SKIPPED_DIRS for p in parts[:-1]):
            return False
        if parts[-1].lower() in ALWAYS_SKIPPED_FILES:
            return False
        if allow is not None and allow.match(path):
            return True
        return deny is None or not deny.match(path)

    return accepts


def published(paths: Iterable[str], root: Path = ROOT) -> list[str]:
    """The relative paths (POSIX) among ``paths`` that publishing would upload."""
    funcignore = root / ".funcignore"
    accepts = matcher(funcignore.read_text() if funcignore.is_file() else "")
    return sorted(p for p in paths if accepts(p))


def committed_files(root: Path = ROOT) -> list[str]:
    """The tree as git sees it: tracked files plus new ones not yet committed but not ignored
    (never a generated, git-ignored file)."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return [p for p in out.decode().split("\0") if p and (root / p).is_file()]


def worktree_files(root: Path = ROOT) -> list[str]:
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file() and not p.is_symlink()
    )


def build(out: Path, root: Path = ROOT) -> list[str]:
    """Write the zip of the committed tree minus what publishing leaves out."""
    files = published(committed_files(root), root)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in files:
            zf.write(root / rel, rel)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.package", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist" / "functionapp.zip")
    parser.add_argument(
        "--worktree",
        action="store_true",
        help="list what `func azure functionapp publish` would upload from the "
        "working folder as it is now; write nothing",
    )
    args = parser.parse_args(argv)
    if args.worktree:
        print("\n".join(published(worktree_files())))
        return 0
    files = build(args.out)
    print(f"{args.out}: {len(files)} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
