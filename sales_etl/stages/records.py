"""What the parse paths produce (header, chunks, rejects), their limits, and the ONE rule set
that decides whether a record is rejected for its shape or its bytes.

Both parse paths (the fast numpy/Arrow scan and the exact csv-module path taken after a
stray quote) call ``row_reject`` on the same raw bytes of a record, so a row is rejected
(or kept) for the same reason, with the same line, whichever path read it.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from sales_etl.core.reasons import RowCode

# Limits (stated in docs/how-it-works.md, Limits). Beyond each, a reason code.
MAX_COLUMNS = 1024  # header cells; more -> the file fails `too_many_columns`
# One record (all its physical lines, its final line end not counted); more ->
# `record_too_long`. 2 MiB keeps a file's peak within the documented ~300 MB
# (docs/performance.md) on both parse paths (a record's value is copied a few times as
# Python text: ~250 MB measured at the limit; at 16 MiB it was up to 920 MB). Real sales
# records are under 1 KB.
MAX_RECORD_BYTES = 2 << 20
MAX_LINE_COMMAS = 64 * MAX_COLUMNS  # a line with more is a `field_count` reject, never split
MAX_DECOMPRESSED_BYTES = 4 << 30  # a gzip file's content; more -> `decompressed_too_large`
MAX_GZIP_RATIO = 100  # decompressed / compressed, checked past GZIP_RATIO_FLOOR -> `gzip_ratio`
GZIP_RATIO_FLOOR = 64 << 20
BLOCK_BYTES = 2 << 20

# The key, in a chunk's column dict, of each valid row's raw record (bytes as read): never a
# SQL column (dataset identifiers cannot hold a dot). Rejects found after staging (in-file
# duplicates, unique conflicts) take their raw row from it: the same parse, no re-read.
RAW = "sales_etl.raw"
_PRIVATE_USE = re.compile("[\ue000-\uf8ff]")


def _standin(record: bytes) -> str:
    """A private-use character absent from ``record`` (one pass over the record)."""
    present = set(_PRIVATE_USE.findall(record.decode("utf-8", errors="replace")))
    for code in range(0xE000, 0xF900):
        if chr(code) not in present:
            return chr(code)
    return "\x00"  # (a record holding all 6,400 of them: NUL, parsed like any character)


@dataclass(frozen=True)
class Reject:
    line: int
    code: RowCode
    reason: str
    fields: tuple[str, ...]


@dataclass
class Header:
    columns: tuple[str, ...]  # as in the file, stripped (empty trailing cells dropped)
    positions: dict[str, int]  # dataset column -> position in the file
    unknown: tuple[str, ...]  # columns in the file the dataset does not know (ignored)
    width: int = 0  # fields per record, the empty trailing cells included
    line: int = 1  # the header's physical line (blank lines before it are skipped)

    def __post_init__(self) -> None:
        self.width = self.width or len(self.columns)

    @property
    def names(self) -> list[str]:
        """A name for every field of a record (the parser needs one per field)."""
        return [*self.columns, *(f"\x00empty{i}" for i in range(self.width - len(self.columns)))]

    @property
    def included(self) -> list[str]:
        """The fields the dataset reads, in file order: the others are never materialised."""
        wanted = set(self.positions)
        return [c for c in self.columns if c in wanted]


@dataclass
class Chunk:
    lines: np.ndarray  # line number of each good-shaped row
    table: pa.Table  # the dataset's columns present in the file, as strings
    rejects: list[Reject] = field(default_factory=list)  # rows that failed on shape
    raw: pa.Array | None = None  # binary: each good row's record (may end with its line end)

    def __len__(self) -> int:
        return self.table.num_rows + len(self.rejects)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def is_blank(record: bytes) -> bool:
    """A line of nothing but white space: skipped, never a row."""
    return not record.strip()


def record_fields(record: bytes) -> tuple[str, ...]:
    """The fields of one raw record, for a rejects file (never fails: it may be broken).
    A record far wider than any header is kept as one field (its text), not split into
    millions of strings."""
    record = record.rstrip(b"\r\n")
    text = record.decode("utf-8", errors="replace")
    if record.count(b",") > MAX_COLUMNS:
        return (text,)
    csv.field_size_limit(MAX_RECORD_BYTES + 1)
    try:
        return tuple(next(csv.reader([text], strict=True), [""]))
    except csv.Error:
        return (text,)


def row_reject(
    line: int, record: bytes, fields: int, width: int, bare_cr: bool, bad_quoting: bool = False
) -> Reject | None:
    """The shape and byte rules of one record (without its line end), in order; None if it
    passes them all. ``bad_quoting``: the csv module refused the record for a quote inside a
    field (only the exact path meets one: the fast scan hands such a block over to it)."""
    if bare_cr:
        # (the csv module refuses a CR in an unquoted field: parse around it, then restore
        # it; the stand-in is a character the record does not hold, so that nothing else
        # turns into a CR)
        standin = _standin(record)
        fields_ = record_fields(record.rstrip(b"\r\n").replace(b"\r", standin.encode()))
        return Reject(
            line,
            "bare_cr",
            "a carriage return (CR) inside an unquoted field",
            tuple(f.replace(standin, "\r") for f in fields_),
        )
    if bad_quoting:
        return Reject(
            line,
            "bad_quoting",
            "a quote inside a field that does not end it (a "
            "closing quote must be followed by a comma or the line end)",
            record_fields(record),
        )
    if fields != width:
        return Reject(
            line, "field_count", f"{fields} fields where the header has {width}", record_fields(record)
        )
    if b"\x00" in record:
        return Reject(line, "nul_byte", "contains a NUL byte", record_fields(record))
    if not is_utf8(record):
        return Reject(
            line, "not_utf8", "not UTF-8 text (another encoding, e.g. Latin-1?)", record_fields(record)
        )
    return None


def raw_array(buffer: bytes, offsets: np.ndarray) -> pa.Array:
    """A binary array over ``buffer`` (no copy): value i is buffer[offsets[i]:offsets[i+1]]."""
    return pa.Array.from_buffers(
        pa.binary(), len(offsets) - 1, [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(buffer)]
    )
