"""The exact parse path: the csv module, from the first block whose quotes the fast scan
cannot resolve (a quote inside a field, ``5" screen``) to the end of the file.

It reads physical lines itself (split on LF only, as the fast path counts them), hands
them to the csv module decoded with ``surrogateescape`` (so a Latin-1 row cannot stop the
file), keeps the bytes of each record, enforces the same record limit as the fast path,
and applies the same row rules (``records.row_reject``) to the same bytes.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator

import numpy as np
import pyarrow as pa

from sales_etl.core.errors import DataError
from sales_etl.stages.records import (
    BLOCK_BYTES,
    MAX_LINE_COMMAS,
    MAX_RECORD_BYTES,
    Chunk,
    Header,
    Reject,
    is_blank,
    row_reject,
)


class _Lines:
    """Physical lines (LF-terminated) as text for the csv module, remembering the bytes and
    first line number of the record being read."""

    def __init__(self, prefix: bytes, read: Callable[[int], bytes], first_line: int, name: str) -> None:
        self._buf = prefix
        self._pos = 0
        self._read = read
        self._eof = False
        self._name = name
        self.next_line = first_line
        self.record_line = first_line
        self.exhausted = False
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._pushed: bytes | None = None

    def __iter__(self) -> _Lines:
        return self

    def __next__(self) -> str:
        if self._pushed is not None:
            line, self._pushed = self._pushed, None
            return line.decode("utf-8", errors="surrogateescape")
        pulled = self.pull()
        if pulled is None:
            self.exhausted = True
            raise StopIteration
        return pulled.decode("utf-8", errors="surrogateescape")

    def push_back(self, line: bytes) -> None:
        """Hand ``line`` (already pulled) to the csv module as its next line."""
        self._pushed = line

    def pull(self) -> bytes | None:
        """The next physical line (bytes, with its LF), counted into the current record."""
        while True:
            end = self._buf.find(b"\n", self._pos)
            if end >= 0:
                line = self._buf[self._pos : end + 1]
                self._pos = end + 1
                break
            if len(self._buf) - self._pos + self._pending_bytes > MAX_RECORD_BYTES:
                raise too_long(self._name, self.record_line if self._pending else self.next_line)
            if self._eof:
                line = self._buf[self._pos :]
                self._buf, self._pos = b"", 0
                if not line:
                    return None
                break
            more = self._read(BLOCK_BYTES)
            if not more:
                self._eof = True
            self._buf = self._buf[self._pos :] + more
            self._pos = 0
        if not self._pending:
            self.record_line = self.next_line
        self.next_line += 1
        self._pending.append(line)
        self._pending_bytes += len(line)
        # (the record's final line end is not counted, as on the fast path: a line's own end
        # is left out; if the record goes on, its next line brings at least as many bytes)
        if self._pending_bytes - (len(line) - len(line.rstrip(b"\r\n"))) > MAX_RECORD_BYTES:
            raise too_long(self._name, self.record_line)
        return line

    def take(self) -> bytes:
        """The bytes of the record just parsed (its line end included)."""
        record = b"".join(self._pending)
        self._pending, self._pending_bytes = [], 0
        return record


def too_long(name: str, line: int) -> DataError:
    return DataError(
        f"{name}: line {line}: a record longer than {MAX_RECORD_BYTES >> 20} MiB (an unterminated quote?)",
        code="record_too_long",
    )


def _rest_of_record(feed: _Lines, first: bytes) -> bytes:
    """The bytes of a record read without the csv module: its first line and, while its
    quotes are unbalanced, the lines after it (within the record limit)."""
    odd = first.count(b'"') % 2
    while odd:
        more = feed.pull()
        if more is None:
            break
        odd ^= more.count(b'"') % 2
    return feed.take()


class _Batch:
    def __init__(self, width: int) -> None:
        self.lines: list[int] = []
        self.columns: list[list[str]] = [[] for _ in range(width)]
        self.raw: list[bytes] = []
        self.rejects: list[Reject] = []
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.lines) + len(self.rejects)

    def chunk(self, header: Header) -> Chunk:
        table = pa.table({c: pa.array(self.columns[i], pa.string()) for i, c in enumerate(header.included)})
        return Chunk(
            np.asarray(self.lines, dtype=np.int64), table, self.rejects, pa.array(self.raw, pa.binary())
        )


def slow_chunks(
    prefix: bytes, read: Callable[[int], bytes], first_line: int, header: Header, name: str, chunk_rows: int
) -> Iterator[Chunk]:
    feed = _Lines(prefix, read, first_line, name)
    csv.field_size_limit(MAX_RECORD_BYTES + 1)  # the record limit (in _Lines) bounds fields
    rows = csv.reader(feed, strict=True)
    width = header.width
    take = [header.positions[c] for c in header.included]
    batch = _Batch(len(take))
    while True:
        first = feed.pull()
        if first is None:
            break
        row: list[str] | None
        if b'"' not in first or first.count(b",") > MAX_LINE_COMMAS:
            # no quote: the fields are exactly the comma-separated pieces, no csv module
            # needed; a line of countless commas is never split into countless strings
            line, record, fields = feed.record_line, _rest_of_record(feed, first), None
            if is_blank(record):
                continue
            body = record.rstrip(b"\r\n")
            wide = body.count(b",") > MAX_LINE_COMMAS
            nfields = body.count(b",") + 1
            reject = row_reject(line, body, nfields, width, b"\r" in body and not wide)
            if reject is None:
                fields = body.decode("utf-8").split(",")
            row = fields
        else:
            feed.push_back(first)
            problem = None
            try:
                row = next(rows)
            except StopIteration:
                break
            except csv.Error as exc:
                if feed.exhausted:  # the file ended inside a quoted field
                    raise DataError(
                        f"{name}: line {feed.record_line}: unterminated quoted field", code="bad_csv"
                    ) from exc
                row, problem = None, str(exc)
            line = feed.record_line
            record = feed.take()
            if is_blank(record):
                continue
            bare = problem is not None and "new-line character" in problem
            reject = row_reject(
                line,
                record.rstrip(b"\r\n"),
                len(row or ()),
                width,
                bare,
                bad_quoting=row is None and not bare,
            )
        if reject is not None:
            batch.rejects.append(reject)
        else:
            assert row is not None
            batch.lines.append(line)
            for i, pos in enumerate(take):
                batch.columns[i].append(row[pos])
            batch.raw.append(record)
            batch.bytes += len(record)
        if len(batch) >= chunk_rows or batch.bytes >= BLOCK_BYTES:
            yield batch.chunk(header)
            batch = _Batch(len(take))
    if len(batch):
        yield batch.chunk(header)
