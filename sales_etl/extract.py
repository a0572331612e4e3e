"""Bytes -> CSV row chunks. No clients, no environment: any binary stream will do.

The stream is read in blocks (gunzipped when its bytes say so). Each block is cut at the
last record boundary: a newline outside quotes, found with numpy on the raw bytes (quote,
comma and newline are ASCII, so UTF-8 needs no decoding for that). The scan also gives
each record's physical line number and its field count, so ragged rows and NUL bytes are
rejected with their line before Arrow's CSV reader parses the block in C++. A block with
a quote that does not sit at a field's edge (``5" screen``) is ambiguous for the scan:
from there on the csv module parses the rest of the file, slower but exact. Memory holds
one block at a time, whatever the size of the file.
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

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .datasets import Dataset
from .errors import DataError

# Arrow's default allocator (mimalloc) keeps freed pages; the system allocator gives them
# back, so peak memory stays flat from file to file in a long-lived worker.
pa.set_memory_pool(pa.system_memory_pool())

MAX_FIELD_BYTES = 1 << 20  # a field longer than 1 MiB is a broken file (unterminated quote?)
MAX_RECORD_BYTES = 16 << 20
BLOCK_BYTES = 2 << 20
GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
QUOTE, COMMA, LF, CR = 34, 44, 10, 13


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
    lines: np.ndarray  # line number of each good-shaped row
    table: pa.Table  # every column of the file, as strings
    rejects: list[Reject] = field(default_factory=list)  # rows that failed on shape

    def __len__(self) -> int:
        return self.table.num_rows + len(self.rejects)


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


def open_bytes(raw: BinaryIO, name: str) -> Any:
    """The file's content as a binary stream: gunzipped if it is gzip (by magic bytes)."""
    buffered: Any = io.BufferedReader(raw, buffer_size=1 << 20)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=buffered, mode="rb")
    if name.lower().endswith(".gz"):
        raise DataError(f"{name}: named .gz but is not gzip data", code="not_gzip")
    return buffered


def open_text(raw: BinaryIO, name: str) -> io.TextIOWrapper:
    """Decoded text (UTF-8 with or without BOM), for the csv-module paths."""
    return io.TextIOWrapper(open_bytes(raw, name), encoding="utf-8-sig", newline="")


class _Reader:
    """Blocks of bytes that always start at a record boundary."""

    def __init__(self, stream: Any, name: str, block_bytes: int) -> None:
        self.stream = stream
        self.name = name
        self.block_bytes = block_bytes
        self.carry = b""
        self.eof = False
        self.line = 1  # physical line number of the first byte of the carry

    def read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(f"{self.name}: near line {self.line}: corrupt gzip data: {exc}",
                            code="bad_gzip") from exc
        if not data:
            self.eof = True
        return bytes(data)

    def fill(self, minimum: int) -> bytes:
        """The carry plus at least ``minimum`` new bytes (or up to the end of the file)."""
        parts = [self.carry]
        got = 0
        while got < minimum and not self.eof:
            data = self.read(max(minimum - got, 1 << 16))
            parts.append(data)
            got += len(data)
        self.carry = b""
        return b"".join(parts)


@dataclass
class _Scan:
    starts: np.ndarray
    ends: np.ndarray  # exclusive, without the line end
    lines: np.ndarray
    fields: np.ndarray
    cut: int  # bytes consumed (up to and including the last record's newline)
    newlines: int  # newlines in the consumed bytes


def _scan(data: bytes, final: bool) -> _Scan | None:
    """Record boundaries of a block that starts at a record boundary; None when a quote
    sits inside a field (the scan would be ambiguous)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(arr == QUOTE)
    inside = None
    if len(quotes):
        odd = np.zeros(len(arr), dtype=np.uint8)
        odd[quotes] = 1
        inside = np.bitwise_xor.accumulate(odd).view(bool)
        padded = np.concatenate(([LF], arr, [LF])).astype(np.uint8)
        before, after = padded[quotes], padded[quotes + 2]
        opens = inside[quotes]
        # an opening quote starts a field (or doubles a quote); a closing one ends it
        edge = np.where(opens, np.isin(before, (COMMA, LF, QUOTE)),
                        np.isin(after, (COMMA, LF, CR, QUOTE)))
        if not edge.all():
            return None
    newlines = np.flatnonzero(arr == LF)
    record_ends = newlines if inside is None else newlines[~inside[newlines]]
    consumed = int(record_ends[-1]) + 1 if len(record_ends) else 0
    if final and consumed < len(arr):
        if inside is not None and inside[-1]:  # an unterminated quote: name its line
            empty = np.empty(0, np.int64)
            return _Scan(empty, empty, empty, empty, -1,
                         int(np.searchsorted(newlines, consumed)))
        record_ends = np.append(record_ends, len(arr))
        consumed = len(arr)
    starts = np.concatenate(([0], record_ends[:-1] + 1)).astype(np.int64)
    ends = record_ends.astype(np.int64)
    has_cr = ends > starts
    has_cr[has_cr] = arr[ends[has_cr] - 1] == CR
    ends = ends - has_cr
    lines = np.searchsorted(newlines, starts)
    commas = np.flatnonzero(arr == COMMA)
    if inside is not None and len(commas):
        commas = commas[~inside[commas]]
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    nl_count = int(np.searchsorted(newlines, consumed))
    return _Scan(starts, ends, lines, fields, consumed, nl_count)


_MAGIC = ((b"PK\x03\x04", "a ZIP archive (an .xlsx spreadsheet?)"), (b"\x89PNG", "a PNG image"),
          (b"\xff\xd8\xff", "a JPEG image"), (b"%PDF", "a PDF document"),
          (b"\xd0\xcf\x11\xe0", "an old Office document (.xls?)"), (b"GIF8", "a GIF image"))


def _refuse_binary(head: bytes, name: str) -> None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"{name}: this is {what}, not a CSV text file", code="not_csv")


def _decode_header(data: bytes, name: str) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_text(name, 1, exc) from exc
    return next(csv.reader([text]), [])


def read_header_fields(fields: list[str], dataset: Dataset, name: str) -> Header:
    columns = tuple(c.strip() for c in fields)
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


def iter_chunks(raw: BinaryIO, dataset: Dataset, name: str, chunk_rows: int,
                block_bytes: int = BLOCK_BYTES) -> tuple[Header, Iterator[Chunk]]:
    """Parse the header now (so header errors fail before anything is loaded) and return a
    lazy iterator of chunks of at most ``chunk_rows`` rows."""
    reader = _Reader(open_bytes(raw, name), name, block_bytes)
    data = reader.fill(1 << 16)
    if data.startswith(BOM):
        data = data[len(BOM):]
    while True:
        scan = _scan(data, reader.eof)
        if scan is None or scan.cut != 0 or reader.eof or len(data) > MAX_RECORD_BYTES:
            break
        data += reader.fill(1 << 20)
    if not data.strip():
        raise DataError(f"{name}: the file is empty (no header line)", code="empty_file")
    _refuse_binary(data[:16], name)
    if scan is None or scan.cut <= 0:
        header_bytes, rest = data, b""
        cut = data.find(b"\n")
        if cut >= 0:
            header_bytes, rest = data[:cut], data[cut + 1:]
    else:
        header_bytes, rest = data[: scan.ends[0]], data[scan.cut if len(scan.starts) == 1
                                                          else scan.starts[1]:]
    if b"\x00" in header_bytes:
        raise DataError(f"{name}: line 1: binary data (NUL bytes) in the header: not a CSV "
                        "text file", code="not_csv")
    header = read_header_fields(_decode_header(header_bytes.rstrip(b"\r"), name), dataset, name)
    reader.carry = rest
    reader.line = 2
    return header, _chunks(reader, header, dataset, chunk_rows)


def _chunks(reader: _Reader, header: Header, dataset: Dataset, chunk_rows: int
            ) -> Iterator[Chunk]:
    width = len(header.columns)
    while True:
        data = reader.fill(reader.block_bytes)
        if not data:
            return
        scan = _scan(data, reader.eof)
        if scan is None:
            yield from _slow_chunks(data, reader, header, chunk_rows)
            return
        if scan.cut < 0:
            raise DataError(f"{reader.name}: line {reader.line + scan.newlines}: unterminated "
                            "quoted field", code="bad_csv")
        if scan.cut == 0:  # one record longer than the block
            if len(data) > MAX_RECORD_BYTES:
                raise DataError(f"{reader.name}: line {reader.line}: a record longer than "
                                f"{MAX_RECORD_BYTES >> 20} MiB (unterminated quote?)",
                                code="bad_csv")
            reader.carry = data
            reader.block_bytes *= 2
            continue
        reader.carry = data[scan.cut:]
        base = reader.line
        reader.line += scan.newlines
        for lo in range(0, len(scan.starts), chunk_rows):
            hi = min(lo + chunk_rows, len(scan.starts))
            yield _fast_chunk(data, scan, lo, hi, base, header, width, reader.name)


def _fast_chunk(data: bytes, scan: _Scan, lo: int, hi: int, base: int, header: Header,
                width: int, name: str) -> Chunk:
    starts, ends = scan.starts[lo:hi], scan.ends[lo:hi]
    lines = scan.lines[lo:hi] + base
    fields = scan.fields[lo:hi]
    blank = ends == starts
    good = (fields == width) & ~blank
    rejects: list[Reject] = []
    ragged = np.flatnonzero((fields != width) & ~blank)
    for i in ragged:
        row = _fields(data[starts[i]:ends[i]])
        if len(row) == 1 and not row[0].strip():
            good[i] = False
            continue
        rejects.append(Reject(int(lines[i]), "field_count",
                              f"{len(row)} fields where the header has {width}", tuple(row)))
    segment = data[starts[0]:ends[-1]] if len(starts) else b""
    if b"\x00" in segment:
        for i in np.flatnonzero(good):
            record = data[starts[i]:ends[i]]
            if b"\x00" in record:
                good[i] = False
                rejects.append(Reject(int(lines[i]), "nul_byte", "contains a NUL byte",
                                      tuple(_fields(record))))
    if not _is_utf8(segment):
        for i in np.flatnonzero(good):
            record = data[starts[i]:ends[i]]
            if not _is_utf8(record):
                good[i] = False
                rejects.append(Reject(int(lines[i]), "not_utf8",
                                      "not UTF-8 text (another encoding, e.g. Latin-1?)",
                                      tuple(_fields(record))))
    if not good.all():
        segment = b"\n".join(data[s:e] for s, e in zip(starts[good], ends[good], strict=True))
    table = _parse(segment, header, int(good.sum()), name, int(lines[0]) if len(lines) else 0)
    return Chunk(lines=lines[good].astype(np.int64), table=table, rejects=rejects)


def _parse(segment: bytes, header: Header, rows: int, name: str, first_line: int) -> pa.Table:
    names = list(header.columns)
    if rows == 0:
        return pa.table({c: pa.array([], pa.string()) for c in names})
    try:
        table = pacsv.read_csv(
            io.BytesIO(segment),
            read_options=pacsv.ReadOptions(column_names=names, use_threads=False,
                                           block_size=4 << 20),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in names},
                strings_can_be_null=False, quoted_strings_can_be_null=False))
    except pa.ArrowInvalid as exc:
        try:
            segment.decode("utf-8")
        except UnicodeDecodeError as err:
            line = first_line + segment.count(b"\n", 0, err.start)
            raise _not_text(name, line, err) from err
        raise DataError(f"{name}: near line {first_line}: unreadable CSV: {exc}",
                        code="bad_csv") from exc
    if table.num_rows != rows:
        raise DataError(f"{name}: near line {first_line}: {table.num_rows} records parsed "
                        f"where {rows} were found", code="bad_csv")
    return table


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _fields(record: bytes) -> list[str]:
    """The fields of one record, for a rejects file (never fails: it is already bad)."""
    text = record.decode("utf-8", errors="replace")
    csv.field_size_limit(MAX_RECORD_BYTES)
    try:
        return next(csv.reader([text]), [""])
    except csv.Error:
        return [text]


def _not_text(name: str, line: int | str, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{name}: line {line}: not UTF-8 text ({exc.reason})", code="not_utf8")


def _slow_chunks(data: bytes, reader: _Reader, header: Header, chunk_rows: int
                 ) -> Iterator[Chunk]:
    """The exact path: the csv module over the rest of the file."""
    rest = io.BufferedReader(_Prefixed(data, reader))
    text = io.TextIOWrapper(rest, encoding="utf-8", newline="")
    csv.field_size_limit(MAX_FIELD_BYTES)
    rows = csv.reader(text, strict=True)
    width = len(header.columns)
    lines: list[int] = []
    good: list[list[str]] = []
    rejects: list[Reject] = []
    previous_end = 0
    offset = reader.line - 1

    def flush() -> Chunk:
        columns = list(zip(*good, strict=True)) if good else [()] * width
        table = pa.table({c: pa.array(columns[i], pa.string())
                          for i, c in enumerate(header.columns)})
        return Chunk(np.asarray(lines, dtype=np.int64), table, list(rejects))

    try:
        for row in rows:
            line = offset + previous_end + 1
            previous_end = rows.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if len(row) != width:
                rejects.append(Reject(line, "field_count",
                                      f"{len(row)} fields where the header has {width}", tuple(row)))
            elif "\x00" in "".join(row):
                rejects.append(Reject(line, "nul_byte", "contains a NUL byte", tuple(row)))
            else:
                lines.append(line)
                good.append(row)
            if len(good) + len(rejects) >= chunk_rows:
                yield flush()
                lines, good, rejects = [], [], []
    except csv.Error as exc:
        raise DataError(f"{reader.name}: line {offset + previous_end + 1}: unreadable CSV: "
                        f"{exc}", code="bad_csv") from exc
    except UnicodeDecodeError as exc:
        raise _not_text(reader.name, offset + previous_end + 1, exc) from exc
    if good or rejects:
        yield flush()


class _Prefixed(io.RawIOBase):
    """Bytes already read, then the rest of the reader's stream."""

    def __init__(self, prefix: bytes, reader: _Reader) -> None:
        self._prefix = memoryview(prefix)
        self._reader = reader

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        if self._prefix:
            n = min(len(buffer), len(self._prefix))
            buffer[:n] = self._prefix[:n]
            self._prefix = self._prefix[n:]
            return n
        data = self._reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


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
