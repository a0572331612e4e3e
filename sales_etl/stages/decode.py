"""Bytes in: the file's raw stream, hashed as it is read (``HashingReader``), gunzipped when
its bytes say so, within a size and ratio limit (``open_bytes``), and read in blocks that
start at a record boundary (``RecordBlockReader``); files that are not UTF-8 CSV text
(images, archives, UTF-16) are refused by their first bytes. No clients, no environment."""

from __future__ import annotations

import gzip
import hashlib
import io
import zlib
from typing import Any, BinaryIO

from sales_etl.core.errors import DataError
from sales_etl.stages.records import GZIP_RATIO_FLOOR, MAX_DECOMPRESSED_BYTES, MAX_GZIP_RATIO

GZIP_MAGIC = b"\x1f\x8b"
BOM = b"\xef\xbb\xbf"
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


class RecordBlockReader:
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


_MAGIC = (
    (b"PK\x03\x04", "a ZIP archive (an .xlsx spreadsheet?)"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"%PDF", "a PDF document"),
    (b"\xd0\xcf\x11\xe0", "an old Office document (.xls?)"),
    (b"GIF8", "a GIF image"),
)


def refuse_binary(head: bytes, name: str) -> None:
    for magic, what in _MAGIC:
        if head.startswith(magic):
            raise DataError(f"{name}: this is {what}, not a CSV text file", code="not_csv")


def refuse_wide_encodings(data: bytes, name: str) -> None:
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


def cr_only(data: bytes, final: bool) -> bool:
    """Old-Mac line ends: the first line ends with a CR that no LF follows."""
    cr = data.find(b"\r")
    if cr < 0 or (cr + 1 == len(data) and not final):
        return False
    lf = data.find(b"\n")
    return lf < 0 or lf > cr + 1
