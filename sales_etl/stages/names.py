"""Blob names are untrusted input: one check, called before any storage call is made
with a name that came from outside (the trigger, ``sales-etl process``, a listing, blob
metadata).

A name is confined to its folder when, after normalisation, it is ``<folder>/<path>`` and
no segment of that path can move up or stay in place. Normalisation is what an HTTP stack
or a storage service may do to a path on its way: percent-decoding (repeatedly: ``%252e``
is ``%2e`` is ``.``), ``\\`` read as ``/``, Unicode compatibility forms (a fullwidth
``．`` is a ``.``). A name is refused, never repaired: a repaired name addresses another
blob.

Names and text in blob metadata (``quote_meta``, ``quote_meta_path``, ``unquote_meta``) are
percent-encoded here too, with no storage client: the pure retry policy writes them, and
the storage edge and the flow use them from here.
"""

from __future__ import annotations

import unicodedata
import urllib.parse

from sales_etl.core.errors import UnsafeName

__all__ = ["MAX_NAME", "UnsafeName", "confine", "problem", "quote_meta", "quote_meta_path", "unquote_meta"]
MAX_NAME = 1024  # Azure's limit on a blob name
_DECODE_ROUNDS = 4


def _normalised_forms(name: str) -> list[str]:
    forms = [name]
    current = name
    for _ in range(_DECODE_ROUNDS):
        decoded = urllib.parse.unquote(current, errors="strict") if "%" in current else current
        if decoded == current:
            break
        forms.append(decoded)
        current = decoded
    forms += [unicodedata.normalize("NFKC", f) for f in list(forms)]
    return [f.replace("\\", "/") for f in forms]


def problem(name: str, folder: str) -> str | None:
    """Why ``name`` is not confined to ``folder``/, or None when it is."""
    if not name:
        return "the name is empty"
    if len(name) > MAX_NAME:
        return f"the name is longer than {MAX_NAME} characters"
    try:
        forms = _normalised_forms(name)
    except UnicodeDecodeError:
        return "the name holds percent-encoded bytes that are not UTF-8"
    for form in forms:
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in form):
            return "the name holds control characters"
        parts = form.split("/")
        if parts[0] != folder:
            return f"the name is not under {folder}/"
        rest = parts[1:]
        if not rest or rest == [""]:
            return f"the name has no file under {folder}/"
        for part in rest:
            if part == "":
                return "the name has an empty path segment (//, or a trailing /)"
            if part.strip(" .") == "":
                return f"the name has a {part.strip() or part!r} path segment"
            if part.endswith("."):
                return "a path segment ends with a dot (Azure drops it)"
    return None


def confine(name: str, folder: str) -> str:
    """``name`` itself if it is confined to ``folder``/ (see the module's docstring);
    else ``UnsafeName`` naming the reason (the name shown percent-encoded, so that no
    control character reaches a log line)."""
    reason = problem(name, folder)
    if reason is not None:
        shown = urllib.parse.quote(name[:200], safe="/ ._-~")
        raise UnsafeName(
            f"{shown}: refused: {reason}; a blob name must stay inside "
            f"{folder}/ (no '.' or '..' segments, also percent-encoded)"
        )
    return name


def quote_meta(value: str, limit: int = 1024) -> str:
    """Blob metadata must be ASCII: percent-encode, and keep it short."""
    return urllib.parse.quote(value, safe=" /:._-=,()'<>@#")[:limit]


def quote_meta_path(value: str, limit: int = 2048) -> str:
    """A blob name for metadata, whole or not at all ("": storage drops it): a truncated
    name is another name (a sweep would send the blob back under it). A reader falls back
    to the name the blob's own path implies."""
    quoted = quote_meta(value, limit + 1)
    return quoted if len(quoted) <= limit else ""


def unquote_meta(value: str) -> str:
    return urllib.parse.unquote(value)
