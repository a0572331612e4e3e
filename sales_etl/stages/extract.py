"""Bytes -> CSV row chunks. No clients, no environment: any binary stream will do.

The stream is read in blocks (``decode``: gunzipped when its bytes say so, within a size
and ratio limit). Each block is cut at the last record boundary: a newline outside quotes,
found with numpy on the raw bytes (``scan``). The scan also gives each record's physical
line number, its field count and whether a bare CR sits in an unquoted field, so bad rows are rejected with
their line (``records.row_reject``, the one rule set) before Arrow's CSV reader parses the
rest of the block in C++, converting only the columns the dataset reads. A block with a
quote that does not sit at a field's edge (``5" screen``) is ambiguous for the scan: from
there on the csv module parses the rest of the file (``slowpath``), slower but exact,
with the same rules and limits. Memory holds one block at a time, whatever the file.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from sales_etl.core.errors import DataError
from sales_etl.stages.decode import (
    BOM,
    HashingReader,
    RecordBlockReader,
    cr_only,
    open_bytes,
    refuse_binary,
    refuse_wide_encodings,
)
from sales_etl.stages.records import (
    BLOCK_BYTES,
    MAX_COLUMNS,
    MAX_RECORD_BYTES,
    Chunk,
    Header,
    Reject,
    is_blank,
    is_utf8,
    raw_array,
    row_reject,
)
from sales_etl.stages.scan import Scan, scan_block
from sales_etl.stages.slowpath import slow_chunks, too_long
from sales_etl.stages.spec import Dataset

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

_BLANK_LINES = re.compile(rb"(?:[ \t\r]*\n)+")


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
    reader = RecordBlockReader(open_bytes(raw, name), name, block_bytes)
    data = reader.fill(1 << 16)
    if data.startswith(BOM):
        data = data[len(BOM) :]
    refuse_wide_encodings(data, name)
    refuse_binary(data[:16], name)
    if cr_only(data, reader.eof):
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
        scan = scan_block(data, reader.eof)
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


def _chunks(reader: RecordBlockReader, header: Header, chunk_rows: int) -> Iterator[Chunk]:
    while True:
        data = reader.fill(reader.block_bytes)
        if not data:
            return
        scan = scan_block(data, reader.eof)
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


def _fast_chunk(data: bytes, scan: Scan, lo: int, hi: int, base: int, header: Header, name: str) -> Chunk:
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
