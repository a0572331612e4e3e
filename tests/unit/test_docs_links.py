"""The links of the README and of the pages under docs/: every relative link points at a file
that exists, every ``#anchor`` at a heading of its target (GitHub's slugs), and every docs
page is reachable from the README (directly, or through docs/README.md).

A page is parsed whole, not line by line, outside fenced code blocks, inline code spans and
HTML comments: inline links and images (their text may wrap onto the next lines; a title in
double quotes, single quotes or parentheses; a destination in ``<...>``), reference links
(``[text][label]``, ``[label][]``, ``[label]``) and their definitions (``[label]: target``;
a reference to a label no definition gives is reported), and the ``href``/``src`` of HTML
``<a>`` and ``<img>`` tags."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

ROOT = Path(__file__).resolve().parents[2]
_FENCE = re.compile(r"^[ \t]*(`{3,}|~{3,})(.*)$")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*(?:[ \t]#+)?[ \t]*$")
_BACKTICKS = re.compile(r"`+")
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_DEFINITION = re.compile(
    r"^ {0,3}\[((?:[^\[\]\\]|\\.)+)\]:[ \t]*\n?[ \t]*(?:<([^<>\n]*)>|(\S+))"
    r"(?:[ \t]*\n?[ \t]*(?:\"[^\"]*\"|'[^']*'|\([^()]*\)))?[ \t]*$",
    re.M,
)
# the part after "[text]" of an inline link: (destination "title"), also over lines
_INLINE_TAIL = re.compile(
    r"\([ \t]*\n?[ \t]*"
    r"(?:<([^<>\n]*)>|((?:[^\s()\\]|\\.|\((?:[^\s()\\]|\\.)*\))*))"
    r"(?:[ \t]*\n?[ \t]*(?:\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'|\((?:[^()\\]|\\.)*\)))?"
    r"[ \t]*\n?[ \t]*\)",
    re.S,
)
_HTML_LINK = re.compile(
    r"<(?:a|img)\b[^>]*?\s(?:href|src)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+))", re.I | re.S
)
_PARAGRAPH_BREAK = re.compile(r"\n[ \t]*\n")
_EXTERNAL = re.compile(r"^[a-z][a-z0-9+.-]*:", re.I)  # https:, mailto:, ...


def pages(root: Path = ROOT) -> list[Path]:
    """The documentation: the README and every markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _without_fences(text: str) -> str:
    """The page with every fenced code block blanked (its lines kept, empty): a block opens
    with three or more backticks or tildes and closes with a run of the same character at
    least as long (an unclosed one runs to the end, as on GitHub)."""
    out, fence = [], ""
    for line in text.splitlines():
        match = _FENCE.match(line)
        if fence:
            closing = match and match.group(1)[0] == fence[0] and len(match.group(1)) >= len(fence)
            if closing and match and not match.group(2).strip():
                fence = ""
            out.append("")
        elif match and not (match.group(1)[0] == "`" and "`" in match.group(2)):
            fence = match.group(1)
            out.append("")
        else:
            out.append(line)
    return "\n".join(out)


def _without_code_spans(text: str) -> str:
    """The text with every inline code span blanked: a run of n backticks opens one, the
    next run of exactly n closes it, in the same paragraph (it may wrap lines); a run that
    nothing closes is text."""
    runs = [(m.start(), m.end()) for m in _BACKTICKS.finditer(text)]
    out: list[str] = []
    pos, k = 0, 0
    while k < len(runs):
        start, end = runs[k]
        if start < pos or _escaped(text, start):
            k += 1
            continue
        closer = next((j for j in range(k + 1, len(runs)) if runs[j][1] - runs[j][0] == end - start), None)
        if closer is None or _PARAGRAPH_BREAK.search(text, end, runs[closer][0]):
            k += 1
            continue
        out.extend((text[pos:start], " "))
        pos, k = runs[closer][1], closer + 1
    out.append(text[pos:])
    return "".join(out)


def _prose(text: str) -> str:
    """The page outside fenced blocks, inline code spans (which may wrap lines) and HTML
    comments: what is rendered as markdown."""
    return _COMMENT.sub(" ", _without_code_spans(_without_fences(text)))


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
    for line in _COMMENT.sub("", _without_fences(text)).splitlines():
        match = _HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


def _label(text: str) -> str:
    """A reference label as markdown matches it: case-insensitive, whitespace collapsed."""
    return " ".join(text.split()).casefold()


def _escaped(text: str, at: int) -> bool:
    backslashes = len(text[:at]) - len(text[:at].rstrip("\\"))
    return backslashes % 2 == 1


def _closing(text: str, start: int) -> int | None:
    """The ``]`` matching the ``[`` at ``start`` (nested brackets counted, escapes skipped),
    within the paragraph; None if there is none."""
    depth, i = 0, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2
            continue
        if char == "[":
            depth += 1
        elif char == "]":
            depth -= 1
            if depth == 0:
                return i
        elif char == "\n" and _PARAGRAPH_BREAK.match(text, i):
            return None
        i += 1
    return None


def parse_links(text: str) -> tuple[list[str], list[str]]:
    """(the targets of every link and image of the page, with those of the reference
    definitions no link uses; the references whose label no definition of the page gives)."""
    prose = _prose(text)
    definitions: dict[str, str] = {}
    for match in _DEFINITION.finditer(prose):
        definitions.setdefault(_label(match.group(1)), match.group(2) or match.group(3) or "")
    targets: list[str] = []
    undefined: list[str] = []
    used: set[str] = set()

    def reference(label: str) -> None:
        used.add(label)
        if definitions[label]:
            targets.append(definitions[label])

    body = _DEFINITION.sub("", prose)
    for start in (m.start() for m in re.finditer(r"\[", body)):
        if _escaped(body, start):
            continue
        end = _closing(body, start)
        if end is None:
            continue
        inner = body[start + 1 : end]
        if inner.startswith("^"):  # a footnote
            continue
        tail = _INLINE_TAIL.match(body, end + 1)
        if tail is not None:  # [text](target "title")
            target = tail.group(1) if tail.group(1) is not None else tail.group(2)
            if target:
                targets.append(target)
            continue
        second = re.match(r"\[((?:[^\[\]\\]|\\.)*)\]", body[end + 1 :])
        if second is not None:  # [text][label] or [label][]
            label = _label(second.group(1) or inner)
            if label in definitions:
                reference(label)
            else:
                undefined.append(f"[{' '.join(inner.split())}][{second.group(1)}]")
            continue
        if _label(inner) in definitions and body[start - 1 : start] != "]":  # [label]
            reference(_label(inner))
    targets.extend(target for label, target in definitions.items() if label not in used and target)
    for match in _HTML_LINK.finditer(prose):
        target = next(g for g in match.groups() if g is not None)
        if target:
            targets.append(target)
    return targets, undefined


def links(text: str) -> list[str]:
    """The targets of the links and images of a page (inline, reference, HTML)."""
    return parse_links(text)[0]


def problems(root: Path = ROOT) -> list[str]:
    """Every broken link of the documentation under ``root``, and every docs page that the
    README does not lead to."""
    root = root.resolve()
    out: list[str] = []
    reached: set[Path] = set()
    todo = [root / "README.md"]
    every = pages(root)
    texts = {page: page.read_text() for page in every}
    for page in every:
        targets, undefined = parse_links(texts[page])
        out.extend(f"{page.relative_to(root)}: {ref}: no definition of its label" for ref in undefined)
        for target in targets:
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
    assert anchors("~~~\n```\n# in a tilde block\n~~~\n# B #\n") == {"b"}


def test_every_kind_of_link_is_read() -> None:
    """Inline links over lines and with every kind of title, images, reference links and
    their definitions, HTML links; nothing inside code."""
    text = (
        "See [the rotation\nsteps](operations.md#rotating-the-keys) and ![a\npicture](img.png).\n"
        "[single](a.md 'title') [double](b.md \"title\") [paren](c.md (title))\n"
        '[angle](<d e.md>) [over\nlines](f.md\n  "a title") [balanced](g(1).md)\n'
        "[full][rk], [Collapsed][], [shortcut] and [Shortcut Two][sc2]; [not a link] stays text.\n"
        '<a href="h.md">h</a> <a class="x" href=\'i.md#top\'>i</a> <img src="j.png" alt="">\n'
        "`[in code](nowhere1.md)` ``[in `double` code](nowhere2.md)`` and ``a code span\n"
        "over [two lines](nowhere3.md)``; <!-- [a comment](nowhere4.md) -->\n"
        "```\n[in a block](nowhere5.md)\n```\n"
        "~~~ toml\n[also in a block](nowhere6.md)\n```\n[still in it](nowhere7.md)\n~~~\n"
        "\\[escaped](nowhere8.md) a footnote[^1]\n\n"
        "[rk]: operations.md#no-such-heading\n"
        "[collapsed]: k.md\n"
        "  [shortcut]: <l.md> 'title'\n"
        "[sc2]:\n  m.md\n"
        "[unused]: n.md\n"
    )
    targets, undefined = parse_links(text)
    assert sorted(targets) == sorted(
        [
            "operations.md#rotating-the-keys",
            "img.png",
            "a.md",
            "b.md",
            "c.md",
            "d e.md",
            "f.md",
            "g(1).md",
            "operations.md#no-such-heading",  # [full][rk]
            "k.md",
            "l.md",
            "m.md",
            "n.md",  # a definition no link uses: still checked
            "h.md",
            "i.md#top",
            "j.png",
        ]
    ), targets
    assert undefined == []
    assert parse_links("[x][nowhere] and [y][]\n")[1] == ["[x][nowhere]", "[y][]"]


def test_a_broken_link_fails(tmp_path: Path) -> None:
    """The check itself: a missing file, a missing heading (also in the same page), a page
    nothing leads to, whatever the kind of link; links in code are not links."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "README.md").write_text(
        "# Top\n[ok](docs/a.md#part-one) [self](#top) [gone](docs/gone.md)\n"
        "[bad anchor](docs/a.md#part-two) `[in code](docs/nowhere.md)`\n"
        "```\n[in a block](docs/nowhere.md)\n```\n[web](https://example.com/x#y)\n"
        "[the rotation\nsteps](docs/a.md#rotating-the-keys) [quoted](docs/b.md 'title')\n"
        '[ref][rk] [unknown][nope] <a href="docs/nowhere.md">html</a>\n\n'
        "[rk]: docs/a.md#no-such-heading\n"
    )
    (tmp_path / "docs" / "a.md").write_text("# A\n## Part one\n[back](../README.md#nope)\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Orphan\n[up](../README.md)\n")
    found = problems(tmp_path)
    assert found == [
        "README.md: [unknown][nope]: no definition of its label",
        "README.md: (docs/gone.md): no such file",
        "README.md: (docs/a.md#part-two): no heading #part-two in docs/a.md",
        "README.md: (docs/a.md#rotating-the-keys): no heading #rotating-the-keys in docs/a.md",
        "README.md: (docs/b.md): no such file",
        "README.md: (docs/a.md#no-such-heading): no heading #no-such-heading in docs/a.md",
        "README.md: (docs/nowhere.md): no such file",
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
