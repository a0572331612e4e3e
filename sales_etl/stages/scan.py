"""The record scan: where each record of a block starts and ends, found with numpy on the
raw bytes (quote, comma and newline are ASCII, so UTF-8 needs no decoding for that), with
each record's physical line, its field count and whether a bare CR sits in an unquoted
field. A block with a quote inside a field is ambiguous for the scan (``None``): the slow
path parses it. Pure."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUOTE, COMMA, LF, CR = 34, 44, 10, 13


@dataclass
class Scan:
    starts: np.ndarray
    ends: np.ndarray  # exclusive, without the line end
    lines: np.ndarray
    fields: np.ndarray
    bare_cr: np.ndarray  # a CR outside quotes inside the record (not its line end)
    cut: int  # bytes consumed (up to and including the last record's newline)
    newlines: int  # newlines in the consumed bytes


def scan_block(data: bytes, final: bool) -> Scan | None:
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
            return Scan(
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
    return Scan(starts, ends, lines, fields, bare, consumed, nl_count)
