"""The links of the README and of the pages under docs/: every relative link points at a file
that exists, every ``#anchor`` at a heading of its target (GitHub's slugs), and every docs
page is reachable from the README (directly, or through docs/README.md)."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def pages(root: Path = ROOT) -> list[Path]:
    """The documentation: the README and every markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _prose(text: str) -> list[str]:
    """The lines outside fenced code blocks."""
    lines, inside = [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            inside = not inside
        elif not inside:
            lines.append(line)
    return lines


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text: the rendered text lower-cased, every character
    that is not a letter, a digit, a space, ``-`` or ``_`` removed, spaces turned into ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(text):
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def links(text: str) -> list[str]:
    """The targets of the inline links and images outside code (fenced or inline)."""
    found = []
    for line in _prose(text):
        found.extend(_LINK.findall(_INLINE_CODE.sub("", line)))
    return found


def problems(root: Path = ROOT) -> list[str]:
    """Every broken link of the documentation under ``root``, and every docs page that the
    README does not lead to."""
    root = root.resolve()
    out = []
    reached: set[Path] = set()
    todo = [root / "README.md"]
    every = pages(root)
    texts = {page: page.read_text() for page in every}
    for page in every:
        for target in links(texts[page]):
            if _EXTERNAL.match(target):
                continue
            path_part, _, anchor = target.partition("#")
            path = (page.parent / unquote(path_part)).resolve() if path_part else page
            where = f"{page.relative_to(root)}: ({target})"
            if not path.exists():
                out.append(f"{where}: no such file")
                continue
            if anchor and path.suffix == ".md":
                text = texts.get(path) or path.read_text()
                if unquote(anchor) not in anchors(text):
                    out.append(f"{where}: no heading #{anchor} in {path.relative_to(root)}")
            elif anchor:
                out.append(f"{where}: an anchor into a file that is not a markdown page")
    while todo:  # reachability: from the README, following links between the pages
        page = todo.pop()
        if page in reached:
            continue
        reached.add(page)
        for target in links(texts[page]):
            path_part = target.partition("#")[0]
            if path_part and not _EXTERNAL.match(target):
                path = (page.parent / unquote(path_part)).resolve()
                if path in texts:
                    todo.append(path)
    out.extend(
        f"{page.relative_to(root)}: not reachable from README.md" for page in every if page not in reached
    )
    return out


def test_every_link_between_the_pages_points_somewhere() -> None:
    assert len(pages()) >= 10
    assert problems() == []


def test_slugs_follow_githubs_rules() -> None:
    assert slug("12. Check it: `sales-etl doctor`, and where it can run") == (
        "12-check-it-sales-etl-doctor-and-where-it-can-run"
    )
    assert slug("Sizing: instances, concurrency and connections") == (
        "sizing-instances-concurrency-and-connections"
    )
    assert slug("The local stack's PgBouncer") == "the-local-stacks-pgbouncer"
    assert slug("With Docker (docker-compose)") == "with-docker-docker-compose"
    assert slug("Draining deadletter/") == "draining-deadletter"
    assert slug("snake_case and [a link](x.md)") == "snake_case-and-a-link"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### A\n") == {"a", "a-1", "a-2"}


def test_a_broken_link_fails(tmp_path: Path) -> None:
    """The check itself: a missing file, a missing heading (also in the same page), a page
    nothing leads to; links in code are not links."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n[ok](docs/a.md#part-one) [self](#top) [gone](docs/gone.md)\n"
        "[bad anchor](docs/a.md#part-two) `[in code](docs/nowhere.md)`\n"
        "```\n[in a block](docs/nowhere.md)\n```\n[web](https://example.com/x#y)\n"
    )
    (tmp_path / "docs" / "a.md").write_text("# A\n## Part one\n[back](../README.md#nope)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n[up](../README.md)\n")
    found = problems(tmp_path)
    assert found == [
        "README.md: (docs/gone.md): no such file",
        "README.md: (docs/a.md#part-two): no heading #part-two in docs/a.md",
        "docs/a.md: (../README.md#nope): no heading #nope in README.md",
        "docs/orphan.md: not reachable from README.md",
    ], found


def test_every_page_the_code_names_exists() -> None:
    """Error hints and comments of the code send readers to ``docs/<page>.md``: each such page
    exists (the tests name their pages themselves, and fail without them)."""
    named = re.compile(r"\bdocs/([\w-]+\.md)\b")
    sources = [p for d in ("sales_etl", "dev", "tools", "bench") for p in (ROOT / d).rglob("*.py")]
    missing = sorted(
        f"{path.relative_to(ROOT)}: docs/{page}"
        for path in [*sources, ROOT / "function_app.py"]
        for page in named.findall(path.read_text())
        if not (ROOT / "docs" / page).is_file()
    )
    assert missing == []
