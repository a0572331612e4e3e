"""Bytes -> CSV row chunks. No clients, no environment: any binary stream will do.

The stream is read in blocks (gunzipped when its bytes say so, within a size and ratio
limit). Each block is cut at the last record boundary: a newline outside quotes, found
with numpy on the raw bytes (quote, comma and newline are ASCII, so UTF-8 needs no
decoding for that). The scan also gives each record's physical line number, its field
count and whether a bare CR sits in an unquoted field, so bad rows are rejected with
their line (``records.row_reject``, the one rule set) before Arrow's CSV reader parses the
rest of the block in C++, converting only the columns the dataset reads. A block with a
quote that does not sit at a field's edge (``5" screen``) is ambiguous for the scan: from
there on the csv module parses the rest of the file (``slowpath``), slower but exact,
with the same rules and limits. Memory holds one block at a time, whatever the file.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from .datasets import Dataset
from .errors import DataError
from .records import (
    BLOCK_BYTES,
    GZIP_RATIO_FLOOR,
    MAX_COLUMNS,
    MAX_DECOMPRESSED_BYTES,
    MAX_GZIP_RATIO,
    MAX_RECORD_BYTES,
    Chunk,
    Header,
    Reject,
    is_blank,
    is_utf8,
    raw_array,
    row_reject,
)
from .slowpath import slow_chunks, too_long

__all__ = [
    "BLOCK_BYTES",
    "MAX_COLUMNS",
    "MAX_RECORD_BYTES",
    "Chunk",
    "HashingReader",
    "Header",
    "Reject",
    "iter_chunks",
    "open_bytes",
    "read_header_fields",
]

# Arrow's default allocator (mimalloc) keeps freed pages; the system allocator gives them
# back, so peak memory stays flat from file to file in a long-lived worker.
pa.set_memory_pool(pa.system_memory_pool())

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
QUOTE, COMMA, LF, CR = 34, 44, 10, 13
_BLANK_LINES = re.compile(rb"(?:[ \t\r]*\n)+")
_WIDE_BOMS = (
    (b"\xff\xfe\x00\x00", "UTF-32 (little-endian)"),
    (b"\x00\x00\xfe\xff", "UTF-32 (big-endian)"),
    (b"\xff\xfe", "UTF-16 (little-endian)"),
    (b"\xfe\xff", "UTF-16 (big-endian)"),
)


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
    """The file's content as a binary stream: gunzipped (within limits) if it is gzip."""
    buffered: Any = io.BufferedReader(raw, buffer_size=1 << 20)
    if buffered.peek(2)[:2] == GZIP_MAGIC:
        return _Gunzip(buffered, name)
    if name.lower().endswith(".gz"):
        raise DataError(f"{name}: named .gz but is not gzip data", code="not_gzip")
    return buffered


class _Counting(io.RawIOBase):
    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.count = 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        data = self._raw.read(size)
        self.count += len(data)
        return bytes(data)


class _Gunzip:
    """gzip.GzipFile that refuses a decompression bomb: past MAX_DECOMPRESSED_BYTES, or a
    ratio above MAX_GZIP_RATIO once GZIP_RATIO_FLOOR bytes came out."""

    def __init__(self, raw: Any, name: str) -> None:
        self._compressed = _Counting(raw)
        self._gzip = gzip.GzipFile(fileobj=self._compressed, mode="rb")
        self._name = name
        self.out = 0

    def read(self, size: int = -1) -> bytes:
        data = self._gzip.read(size)
        self.out += len(data)
        if self.out > MAX_DECOMPRESSED_BYTES:
            raise DataError(
                f"{self._name}: decompressed content over {MAX_DECOMPRESSED_BYTES >> 30} GiB",
                code="decompressed_too_large",
            )
        if self.out > GZIP_RATIO_FLOOR and self.out > MAX_GZIP_RATIO * self._compressed.count:
            raise DataError(
                f"{self._name}: decompresses over {MAX_GZIP_RATIO} times its size (a decompression bomb?)",
                code="gzip_ratio",
            )
        return data

    def close(self) -> None:
        self._gzip.close()


class _RecordBlockReader:
    """Blocks of bytes that always start at a record boundary."""

    def __init__(self, stream: Any, name: str, block_bytes: int) -> None:
        self.stream = stream
        self.name = name
        self.block_bytes = block_bytes
        self.carry = b""
        self.eof = False
        self.line = 1  # physical line number of the first byte of the carry
        self.cr_only = False  # old-Mac line ends: every CR read as LF

    def read(self, size: int) -> bytes:
        try:
            data = self.stream.read(size)
        except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
            raise DataError(
                f"{self.name}: near line {self.line}: corrupt gzip data: {exc}", code="bad_gzip"
            ) from exc
        if not data:
            self.eof = True
        data = bytes(data)
        return data.replace(b"\r", b"\n") if self.cr_only else data

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
    bare_cr: np.ndarray  # a CR outside quotes inside the record (not its line end)
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
        edge = np.where(opens, np.isin(before, (COMMA, LF, QUOTE)), np.isin(after, (COMMA, LF, CR, QUOTE)))
        if not edge.all():
            return None
    newlines = np.flatnonzero(arr == LF)
    record_ends = newlines if inside is None else newlines[~inside[newlines]]
    consumed = int(record_ends[-1]) + 1 if len(record_ends) else 0
    if final and consumed < len(arr):
        if inside is not None and inside[-1]:  # an unterminated quote: name its line
            empty = np.empty(0, np.int64)
            return _Scan(
                empty, empty, empty, empty, empty.astype(bool), -1, int(np.searchsorted(newlines, consumed))
            )
        record_ends = np.append(record_ends, len(arr))
        consumed = len(arr)
    starts = np.concatenate(([0], record_ends[:-1] + 1)).astype(np.int64)
    ends = record_ends.astype(np.int64)
    has_cr = ends > starts
    has_cr[has_cr] = arr[ends[has_cr] - 1] == CR
    ends = ends - has_cr
    # blank lines are never rows: dropped here, so a flood of them costs no memory per line
    kept = np.flatnonzero(ends > starts)
    if len(kept) < len(starts):
        starts, ends = starts[kept], ends[kept]
    # without quotes every newline ends a record: record i starts on line i
    lines = kept if inside is None else np.searchsorted(newlines, starts)
    commas = np.flatnonzero(arr == COMMA)
    if inside is not None and len(commas):
        commas = commas[~inside[commas]]
    fields = np.searchsorted(commas, ends) - np.searchsorted(commas, starts) + 1
    bare = np.zeros(len(starts), dtype=bool)
    crs = np.flatnonzero(arr[:consumed] == CR)
    if inside is not None and len(crs):
        crs = crs[~inside[crs]]
    if len(crs) and len(starts):
        record = np.searchsorted(starts, crs, side="right") - 1
        within = crs < ends[record]
        bare[record[within]] = True
    nl_count = len(newlines) if inside is None else int(np.searchsorted(newlines, consumed))
    return _Scan(starts, ends, lines, fields, bare, consumed, nl_count)


_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx spreadsheet?)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls?)"),
    (b"GIF8", "a GIF image"),
)


def _refuse_binary(head: bytes, name: str) -> None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"{name}: this is {what}, not a CSV text file", code="not_csv")


def _refuse_wide_encodings(data: bytes, name: str) -> None:
    """UTF-16/32 (Excel's "Unicode text"): say so, by its byte-order mark or, without one,
    by the NUL byte beside every ASCII character."""
    found = next((enc for bom, enc in _WIDE_BOMS if data.startswith(bom)), None)
    head = data[:512]
    if found is None and len(head) >= 8 and b"\x00" in head:
        even, odd = head[0::2], head[1::2]
        if odd.count(0) >= 0.9 * len(odd) and even.count(0) == 0:
            found = "UTF-16 (little-endian)"
        elif even.count(0) >= 0.9 * len(even) and odd.count(0) == 0:
            found = "UTF-16 (big-endian)"
    if found is not None:
        raise DataError(
            f'{name}: line 1: the file is {found} text, not UTF-8: save it as UTF-8 ("CSV UTF-8" in Excel)',
            code="not_utf8",
        )


def _cr_only(data: bytes, final: bool) -> bool:
    """Old-Mac line ends: the first line ends with a CR that no LF follows."""
    cr = data.find(b"\r")
    if cr < 0 or (cr + 1 == len(data) and not final):
        return False
    lf = data.find(b"\n")
    return lf < 0 or lf > cr + 1


def _decode_header(data: bytes, name: str, line: int) -> list[str]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_text(name, line, exc) from exc
    try:
        return next(csv.reader([text], strict=True), [])
    except csv.Error as exc:
        raise DataError(f"{name}: line {line}: unreadable header ({exc})", code="bad_csv") from exc


def read_header_fields(fields: list[str], dataset: Dataset, name: str, line: int = 1) -> Header:
    cells = [c.strip() for c in fields]
    width = len(cells)
    while len(cells) > 1 and cells[-1] == "":  # Excel's trailing ",,": ignored
        cells.pop()
    columns = tuple(cells)
    if len(columns) == 1 and (";" in columns[0] or "\t" in columns[0]):
        sep = "semicolons" if ";" in columns[0] else "tabs"
        raise DataError(
            f"{name}: line {line}: the header is separated by {sep}; the file must be comma-separated",
            code="bad_delimiter",
        )
    seen: dict[str, int] = {}
    known = {c.name for c in dataset.columns}
    for pos, col in enumerate(columns, start=1):
        if col in seen:
            # (a file without a header has a data row here: only a name the dataset defines
            # is shown, never a cell that may be a value, e.g. a customer id)
            what = (
                f"column {col!r}"
                if col in known
                else "a column outside the dataset"
                if col
                else "an empty column name"
            )
            raise DataError(
                f"{name}: line {line}: {what} appears twice (positions {seen[col]} and {pos})",
                code="duplicate_column",
            )
        seen[col] = pos
    missing = [c for c in dataset.required if c not in seen]
    if missing:
        raise DataError(
            f"{name}: line {line}: missing required column(s) {', '.join(missing)}", code="missing_columns"
        )
    positions = {c: seen[c] - 1 for c in known if c in seen}
    unknown = tuple(c for c in columns if c not in known)
    if width > len(columns):
        unknown += (f"({width - len(columns)} empty header cells at the end: ignored)",)
    return Header(columns=columns, positions=positions, unknown=unknown, width=width, line=line)


def iter_chunks(
    raw: BinaryIO, dataset: Dataset, name: str, chunk_rows: int, block_bytes: int = BLOCK_BYTES
) -> tuple[Header, Iterator[Chunk]]:
    """Parse the header now (so header errors fail before anything is loaded) and return a
    lazy iterator of chunks of at most ``chunk_rows`` rows."""
    reader = _RecordBlockReader(open_bytes(raw, name), name, block_bytes)
    data = reader.fill(1 << 16)
    if data.startswith(BOM):
        data = data[len(BOM) :]
    _refuse_wide_encodings(data, name)
    _refuse_binary(data[:16], name)
    if _cr_only(data, reader.eof):
        reader.cr_only = True
        data = data.replace(b"\r", b"\n")
    line = 1
    while True:  # blank lines before the header are skipped (and counted)
        blank = _BLANK_LINES.match(data)
        if blank:
            line += data.count(b"\n", 0, blank.end())
            data = data[blank.end() :]
        if data.strip() or reader.eof:
            break
        data += reader.fill(1 << 16)
    while True:
        scan = _scan(data, reader.eof)
        if scan is None or scan.cut != 0 or reader.eof or len(data) > MAX_RECORD_BYTES:
            break
        data += reader.fill(1 << 20)
    if not data.strip():
        raise DataError(f"{name}: the file is empty (no header line)", code="empty_file")
    if scan is None or scan.cut <= 0 or not len(scan.starts):
        header_bytes, rest = data, b""
        cut = data.find(b"\n")
        if cut >= 0:
            header_bytes, rest = data[:cut], data[cut + 1 :]
    else:
        newline = data.find(b"\n", int(scan.ends[0]))
        header_bytes, rest = data[: scan.ends[0]], data[newline + 1 :] if newline >= 0 else b""
    if len(header_bytes) > MAX_RECORD_BYTES:
        raise too_long(name, line)
    if header_bytes.count(b",") >= MAX_COLUMNS:
        raise DataError(
            f"{name}: line {line}: the header has more than {MAX_COLUMNS} columns", code="too_many_columns"
        )
    if b"\x00" in header_bytes:
        raise DataError(
            f"{name}: line {line}: binary data (NUL bytes) in the header: not a CSV text file", code="not_csv"
        )
    fields = _decode_header(header_bytes.rstrip(b"\r"), name, line)
    header = read_header_fields(fields, dataset, name, line)
    reader.carry = rest
    reader.line = line + 1
    return header, _chunks(reader, header, chunk_rows)


def _chunks(reader: _RecordBlockReader, header: Header, chunk_rows: int) -> Iterator[Chunk]:
    while True:
        data = reader.fill(reader.block_bytes)
        if not data:
            return
        scan = _scan(data, reader.eof)
        if scan is None:
            yield from slow_chunks(data, reader.read, reader.line, header, reader.name, chunk_rows)
            return
        if scan.cut < 0:
            raise DataError(
                f"{reader.name}: line {reader.line + scan.newlines}: unterminated quoted field",
                code="bad_csv",
            )
        if scan.cut == 0:  # one record longer than the block
            if len(data) > MAX_RECORD_BYTES:
                raise too_long(reader.name, reader.line)
            reader.carry = data
            reader.block_bytes *= 2
            continue
        if len(scan.starts):
            longest = int(np.argmax(scan.ends - scan.starts))
            if scan.ends[longest] - scan.starts[longest] > MAX_RECORD_BYTES:
                raise too_long(reader.name, reader.line + int(scan.lines[longest]))
        reader.carry = data[scan.cut :]
        base = reader.line
        reader.line += scan.newlines
        for lo in range(0, len(scan.starts), chunk_rows):
            hi = min(lo + chunk_rows, len(scan.starts))
            if (scan.ends[lo:hi] > scan.starts[lo:hi]).any():  # not only blank lines
                yield _fast_chunk(data, scan, lo, hi, base, header, reader.name)


def _fast_chunk(data: bytes, scan: _Scan, lo: int, hi: int, base: int, header: Header, name: str) -> Chunk:
    starts, ends = scan.starts[lo:hi], scan.ends[lo:hi]
    lines = scan.lines[lo:hi] + base
    fields = scan.fields[lo:hi]
    bare = scan.bare_cr[lo:hi]
    width = header.width
    empty = ends == starts  # blank lines: skipped, never rows
    good = (fields == width) & ~bare & ~empty
    suspect = ~good & ~empty
    segment = data[starts[0] : ends[-1]] if len(starts) else b""
    if b"\x00" in segment or not is_utf8(segment):
        for i in np.flatnonzero(good):
            record = data[starts[i] : ends[i]]
            if b"\x00" in record or not is_utf8(record):
                suspect[i] = True
    rejects: list[Reject] = []
    for i in np.flatnonzero(suspect):  # the shared rule set decides
        record = data[starts[i] : ends[i]]
        good[i] = False
        if is_blank(record):
            continue
        reject = row_reject(int(lines[i]), record, int(fields[i]), width, bool(bare[i]))
        if reject is None:
            good[i] = True
        else:
            rejects.append(reject)
    keep = np.flatnonzero(good)
    if len(keep) == len(starts) and len(keep):
        offsets = np.append(starts - starts[0], ends[-1] - starts[0])
    else:
        lengths = ends[keep] - starts[keep]
        segment = b"\n".join(data[s:e] for s, e in zip(starts[keep], ends[keep], strict=True))
        offsets = np.concatenate(([0], np.cumsum(lengths + 1)))
        offsets[-1] = len(segment)
    longest = int((ends[keep] - starts[keep]).max()) if len(keep) else 0
    table = _parse(segment, header, len(keep), name, int(lines[0]) if len(lines) else 0, longest)
    return Chunk(
        lines=lines[good].astype(np.int64), table=table, rejects=rejects, raw=raw_array(segment, offsets)
    )


def _parse(
    segment: bytes, header: Header, rows: int, name: str, first_line: int, longest: int = 0
) -> pa.Table:
    """Arrow's CSV reader fails ("straddling object straddles two block boundaries") on a
    record that spans more than two of its blocks: the block is made longer than the
    longest record (at most ``MAX_RECORD_BYTES``, checked before), so every record up to
    the limit is read."""
    included = header.included
    if rows == 0:
        return pa.table({c: pa.array([], pa.string()) for c in included})
    try:
        table = pacsv.read_csv(
            io.BytesIO(segment),
            read_options=pacsv.ReadOptions(
                column_names=header.names, use_threads=False, block_size=max(4 << 20, longest + (64 << 10))
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, ignore_empty_lines=True),
            convert_options=pacsv.ConvertOptions(
                column_types={c: pa.string() for c in included},
                include_columns=included,
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except pa.ArrowInvalid as exc:
        try:
            segment.decode("utf-8")
        except UnicodeDecodeError as err:
            line = first_line + segment.count(b"\n", 0, err.start)
            raise _not_text(name, line, err) from err
        raise DataError(f"{name}: near line {first_line}: unreadable CSV: {exc}", code="bad_csv") from exc
    if table.num_rows != rows:
        raise DataError(
            f"{name}: near line {first_line}: {table.num_rows} records parsed where {rows} were found",
            code="bad_csv",
        )
    return table


def _not_text(name: str, line: int | str, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{name}: line {line}: not UTF-8 text ({exc.reason})", code="not_utf8")
