"""Bytes -> CSV row chunks. No clients, no environment: any binary stream will do.

The stream is decoded incrementally (gzip when the bytes say so, UTF-8 with or without
BOM, CRLF or LF) and parsed by the csv module, which keeps quoted fields with commas and
newlines whole and knows each record's physical line number. Memory holds one chunk of
rows at a time, whatever the size of the file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from .datasets import Dataset
from .errors import DataError

MAX_FIELD_BYTES = 1 << 20  # a field longer than 1 MiB is a broken file (unterminated quote?)
GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class Reject:
    line: int
    code: str
    reason: str
    fields: tuple[str, ...]


@dataclass
class Header:
    columns: tuple[str, ...]  # as in the file, stripped
    positions: dict[str, int]  # dataset column -> position in the file
    unknown: tuple[str, ...]  # columns in the file the dataset does not know (ignored)


@dataclass
class Chunk:
    lines: list[int] = field(default_factory=list)  # line number of each good-shaped row
    rows: list[list[str]] = field(default_factory=list)
    rejects: list[Reject] = field(default_factory=list)  # rows that failed on shape

    def __len__(self) -> int:
        return len(self.rows) + len(self.rejects)


class HashingReader(io.RawIOBase):
    """Passes bytes through while computing their SHA-256 and counting them."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self.sha256 = hashlib.sha256()
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        data = self._raw.read(len(buffer))
        if not data:
            return 0
        n = len(data)
        buffer[:n] = data
        self.sha256.update(data)
        self.bytes_read += n
        return n

    def drain(self) -> None:
        """Read to the end (so the hash covers the whole file)."""
        while self.read(1 << 20):
            pass


def open_text(raw: BinaryIO, name: str) -> io.TextIOWrapper:
    """Decode a binary stream: gunzip if it is gzip (by magic bytes), UTF-8 with BOM or not."""
    buffered: Any = io.BufferedReader(raw, buffer_size=1 << 20)
    magic = buffered.peek(2)[:2]
    stream: Any = buffered
    if magic == GZIP_MAGIC:
        stream = gzip.GzipFile(fileobj=buffered, mode="rb")
    elif name.lower().endswith(".gz"):
        raise DataError(f"{name}: named .gz but is not gzip data", code="not_gzip")
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")


def read_header(reader: Iterator[list[str]], dataset: Dataset, name: str) -> Header:
    try:
        first = next(reader)
    except StopIteration:
        raise DataError(f"{name}: the file is empty (no header line)", code="empty_file") from None
    columns = tuple(c.strip() for c in first)
    if len(columns) == 1 and (";" in columns[0] or "\t" in columns[0]):
        sep = "semicolons" if ";" in columns[0] else "tabs"
        raise DataError(f"{name}: line 1: the header is separated by {sep}; "
                        "the file must be comma-separated", code="bad_delimiter")
    seen: dict[str, int] = {}
    for pos, col in enumerate(columns, start=1):
        if col in seen:
            raise DataError(f"{name}: line 1: column {col!r} appears twice "
                            f"(positions {seen[col]} and {pos})", code="duplicate_column")
        seen[col] = pos
    missing = [c for c in dataset.required if c not in seen]
    if missing:
        raise DataError(f"{name}: line 1: missing required column(s) {', '.join(missing)}",
                        code="missing_columns")
    known = {c.name for c in dataset.columns}
    positions = {c: seen[c] - 1 for c in known if c in seen}
    unknown = tuple(c for c in columns if c not in known)
    return Header(columns=columns, positions=positions, unknown=unknown)


def iter_chunks(text: io.TextIOBase, dataset: Dataset, name: str, chunk_rows: int,
                ) -> tuple[Header, Iterator[Chunk]]:
    """Parse the header now (so header errors fail before anything is loaded) and return a
    lazy iterator of chunks of at most ``chunk_rows`` rows."""
    csv.field_size_limit(MAX_FIELD_BYTES)
    reader = csv.reader(text, strict=True)
    try:
        header = read_header(_guarded(reader, name), dataset, name)
    except UnicodeDecodeError as exc:
        raise _not_text(name, 1, exc) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{name}: corrupt gzip data: {exc}", code="bad_gzip") from exc
    return header, _chunks(reader, header, name, chunk_rows)


def _guarded(reader: Iterator[list[str]], name: str) -> Iterator[list[str]]:
    try:
        yield from reader
    except csv.Error as exc:
        line = getattr(reader, "line_num", "?")
        raise DataError(f"{name}: line {line}: unreadable CSV: {exc}", code="bad_csv") from exc


def _not_text(name: str, line: int | str, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{name}: near line {line}: not UTF-8 text "
                     f"({exc.reason} at byte {exc.start} of a block)", code="not_utf8")


def _chunks(reader: Iterator[list[str]], header: Header, name: str,
            chunk_rows: int) -> Iterator[Chunk]:
    width = len(header.columns)
    chunk = Chunk()
    line_of = reader.line_num  # type: ignore[attr-defined]
    previous_end = line_of
    try:
        for row in reader:
            end = reader.line_num  # type: ignore[attr-defined]
            line = previous_end + 1  # the record's first physical line
            previous_end = end
            if not row or (len(row) == 1 and not row[0].strip()):
                continue  # blank line
            if len(row) != width:
                chunk.rejects.append(Reject(line, "field_count",
                                            f"{len(row)} fields where the header has {width}",
                                            tuple(row)))
            elif "\x00" in "".join(row):
                chunk.rejects.append(Reject(line, "nul_byte", "contains a NUL byte", tuple(row)))
            else:
                chunk.lines.append(line)
                chunk.rows.append(row)
            if len(chunk) >= chunk_rows:
                yield chunk
                chunk = Chunk()
    except csv.Error as exc:
        raise DataError(f"{name}: line {previous_end + 1}: unreadable CSV: {exc}",
                        code="bad_csv") from exc
    except UnicodeDecodeError as exc:
        raise _not_text(name, previous_end + 1, exc) from exc
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise DataError(f"{name}: near line {previous_end + 1}: corrupt gzip data: {exc}",
                        code="bad_gzip") from exc
    if len(chunk):
        yield chunk


def pick_lines(text: io.TextIOBase, lines: set[int]) -> dict[int, tuple[str, ...]]:
    """Re-read a file and return the raw fields of the records starting at ``lines``
    (used to write rejects found only after staging, such as in-file duplicates)."""
    csv.field_size_limit(MAX_FIELD_BYTES)
    reader = csv.reader(text, strict=True)
    found: dict[int, tuple[str, ...]] = {}
    previous_end = 0
    for row in reader:
        line = previous_end + 1
        previous_end = reader.line_num
        if line in lines:
            found[line] = tuple(row)
            if len(found) == len(lines):
                break
    return found
