"""The blob names operators type or paste, turned into the container-relative name a
command needs (pure: no clients, no environment).

Accepted for ``sales-etl process``: the path ``upload`` prints (``<container>/incoming/..``),
the container-relative path (``incoming/..``) and the blob's URL
(``https://<account>.blob.core.windows.net/<container>/incoming/..`` or Azurite's
``http://127.0.0.1:<port>/<account>/<container>/incoming/..``). Anything else is refused
with one line that shows the expected form.
"""

from __future__ import annotations

import shlex
import urllib.parse

from sales_etl.core.errors import ConfigError
from sales_etl.storage.container import FOLDERS, INCOMING

_OTHER_FOLDERS = tuple(f for f in FOLDERS if f != INCOMING)  # the layout's, one list


def expected_form(container: str) -> str:
    return (
        f"expected incoming/[<dataset>/]<file> (e.g. incoming/sales/file.csv), the path "
        f"`upload` prints ({container}/incoming/...), or the blob's URL"
    )


def _strip_url(text: str, container: str) -> str:
    """The container-relative part of a blob URL (decoded), or the text unchanged."""
    parsed = urllib.parse.urlsplit(text)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        return text
    parts = [urllib.parse.unquote(p) for p in parsed.path.split("/") if p]
    # https://<account>.blob.../<container>/<blob>  or  http://host:port/<account>/<container>/<blob>
    for i in range(min(2, len(parts))):
        if parts[i] == container:
            return "/".join(parts[i + 1 :])
    raise ConfigError(
        f"{text}: this URL is not in container {container!r}; " + expected_form(container),
        code="bad_blob_name",
    )


def incoming_blob(text: str, container: str) -> str:
    """The name under ``incoming/`` that ``text`` designates, or ConfigError saying the
    expected form."""
    raw = text.strip()
    if not raw:
        raise ConfigError("the blob name is empty; " + expected_form(container), code="bad_blob_name")
    name = _strip_url(raw, container).lstrip("/")
    if name.startswith(f"{container}/") and not name.startswith(f"{INCOMING}/"):
        name = name[len(container) + 1 :]
    first = name.split("/", 1)[0]
    if first in _OTHER_FOLDERS:
        hint = (
            f"; to load it again, first move it back with: sales-etl requeue {shlex.quote(name)}"
            if first in ("failed", "deadletter")
            else ""
        )
        raise ConfigError(
            f"{text}: process takes a blob in incoming/, not {first}/{hint}", code="bad_blob_name"
        )
    if first != INCOMING or name.rstrip("/") == INCOMING:
        raise ConfigError(
            f"{text}: not a blob path under incoming/; " + expected_form(container), code="bad_blob_name"
        )
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise ConfigError(f"{text}: empty, '.' or '..' path segments are not allowed", code="bad_blob_name")
    return name


def pasted_name(text: str, container: str) -> str:
    """A blob name given to ``sales-etl requeue`` or ``runs --blob`` with what people paste
    around it removed: the blob's URL becomes its container-relative path, and the
    container in front of an ``incoming/``, ``failed/``, ... path (as ``upload`` prints
    paths) is dropped. Other names (``sales/x.csv``, ``x.csv``) are returned stripped."""
    name = _strip_url(text.strip(), container).lstrip("/")
    rest = name[len(container) + 1 :]
    if name.startswith(f"{container}/") and rest.split("/", 1)[0] in (INCOMING, *_OTHER_FOLDERS):
        return rest
    return name
