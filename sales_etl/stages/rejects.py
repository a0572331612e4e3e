"""The rejects file: one CSV row per rejected input row, with its line number, reason code,
human reason and the raw row as it was in the file (re-serialised as one CSV field)."""

from __future__ import annotations

import csv
import io
import tempfile
from collections.abc import Iterable
from typing import IO

from sales_etl.stages.records import Reject

HEADER = ("line", "reason_code", "reason", "raw_row")
# A cell may start with a letter, a digit or one of these; any other first character (=, +,
# -, @, a space, a tab, CR, LF, NUL or any control character, a full-width sign, ...) gets
# a ' before it, so that a spreadsheet opening the rejects file runs nothing (CSV injection).
SAFE_START = frozenset("\"'_.,;:/()[]{}<>#$%&*!?~^`\\")


class RejectsWriter:
    """Spools rejects to a temporary file (memory stays flat however many there are)."""

    def __init__(self) -> None:
        self._raw: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=4 << 20)  # noqa: SIM115
        self._text = io.TextIOWrapper(self._raw, encoding="utf-8", newline="", write_through=True)
        self._writer = csv.writer(self._text)
        self._writer.writerow(HEADER)
        self.count = 0
        self.codes: dict[str, int] = {}

    def add(self, rejects: Iterable[Reject]) -> None:
        for r in rejects:
            self._writer.writerow((r.line, r.code, guard(r.reason), guard(_raw(r.fields))))
            self.count += 1
            self.codes[r.code] = self.codes.get(r.code, 0) + 1

    def open_bytes(self) -> IO[bytes]:
        """The rejects CSV as a binary stream, from its start (spooled to disk when large)."""
        self._text.flush()
        self._raw.seek(0)
        return self._raw

    def close(self) -> None:
        self._text.close()


def _raw(fields: tuple[str, ...]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerow(fields)  # (quotes a CR or LF in a field)
    return buffer.getvalue()[:-2]


def guard(cell: str) -> str:
    """``cell`` as it is when its first character is a letter, a digit or in
    ``SAFE_START``; else with a ``'`` before it (an allow-list: a spreadsheet evaluates
    more first characters than anyone lists)."""
    if not cell:
        return cell
    first = cell[0]
    if (
        (first.isascii() and first.isalnum())
        or first in SAFE_START
        or (not first.isascii() and first.isalpha())
    ):
        return cell
    return "'" + cell
