"""Chunk -> (valid rows, rejects). Pure and vectorised: no I/O, no environment.

Every row of a chunk ends in exactly one of two places: the valid columns (its SQL
columns, normalised, ready to protect and COPY) or the rejects, with the first reason
found. Per column: normalise, empty values (``required``, ``default``), the type's parse,
then the value checks of the rule table (``rules.RULES``) in its order; then derived
columns (their mismatch code is the dataset's ``mismatch``) and in-chunk duplicates. Nothing
here knows a dataset or a column by name. The checks run as Arrow compute kernels over
whole columns; Python loops only over the rows rejected, to word their reasons. (No pandas
here: the worker stays lean.)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, localcontext
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sales_etl.core.reasons import RowCode
from sales_etl.stages.expr import evaluate
from sales_etl.stages.records import RAW, Chunk, Header, Reject, record_fields
from sales_etl.stages.rulechecks import Finding, Values, as_mask
from sales_etl.stages.rules import value_checks
from sales_etl.stages.spec import Column, Dataset

if TYPE_CHECKING:
    import pandas as pd

_INT_RE = r"^[+-]?\d{1,18}$"
_DEC_RE = r"^[+-]?(?:\d{1,30}(?:\.\d*)?|\.\d+)$"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PG_LAST_YEAR = {"timestamp": 294276, "date": 5874897}


@dataclass
class Transformed:
    columns: dict[str, pa.Array]  # one string array per SQL data column (valid rows only)
    lines: np.ndarray  # line number of each valid row
    rejects: list[Reject]

    def __len__(self) -> int:
        return len(self.lines)

    @property
    def frame(self) -> pd.DataFrame:
        """The valid rows as a pandas frame (for inspection and tests)."""
        import pandas as pd

        return pd.DataFrame({k: v.to_pylist() for k, v in self.columns.items() if k != RAW})


def round_half_up(values: np.ndarray, scale: int) -> np.ndarray:
    """Round like a cashier (half away from zero), robust to binary floats (2.675 -> 2.68)."""
    factor = 10.0**scale
    return np.sign(values) * np.floor(np.abs(values) * factor + 0.5 + 1e-7) / factor


class _Flags:
    """The first reject reason of each row."""

    def __init__(self, n: int) -> None:
        self.code = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)
        self.flagged = np.zeros(n, dtype=bool)

    def set(self, mask: np.ndarray, code: RowCode, reason: str | np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool) & ~self.flagged
        if not mask.any():
            return
        self.flagged |= mask
        self.code[mask] = code
        self.reason[mask] = reason if isinstance(reason, str) else reason[mask]

    @property
    def bad(self) -> np.ndarray:
        return self.flagged


def _quoted(values: pa.Array, mask: np.ndarray, before: str, after: str) -> np.ndarray:
    """Word a reason per flagged row, ``<before> <value> <after>`` (a loop over the rejected
    rows only; the text around the value is never a format string: a name or a pattern may
    hold braces)."""
    out = np.full(len(values), None, dtype=object)
    idx = np.flatnonzero(mask)
    if len(idx):
        for i, value in zip(idx, values.take(pa.array(idx)).to_pylist(), strict=True):
            out[i] = f"{before} {_show(value)} {after}"
    return out


def _worded(col: Column, values: pa.Array, finding: Finding) -> str | np.ndarray:
    """A finding's reason: the value quoted, unless the check or the column (sensitive:
    never quoted) says not to."""
    if not finding.show_value or col.sensitive:
        return f"{col.name} {finding.what}"
    return _quoted(values, finding.mask, col.name, finding.what)


def _show(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


class _Parsed:
    """Per column: the normalised text, and the numeric value where the type has one."""

    def __init__(self) -> None:
        self.text: dict[str, pa.Array] = {}
        self.number: dict[str, np.ndarray] = {}


def transform(chunk: Chunk, header: Header, dataset: Dataset) -> Transformed:
    n = chunk.table.num_rows
    flags = _Flags(n)
    parsed = _Parsed()
    out: dict[str, pa.Array] = {}
    for col in dataset.columns:
        if col.name in header.positions:
            raw = chunk.table.column(col.name).combine_chunks()
        else:
            raw = pa.array([""] * n, pa.string())
        _column(col, raw, flags, parsed, out)
    for col in dataset.columns:
        if col.derive:
            _derive(col, parsed, flags, out)
    _in_chunk_duplicates(dataset, out, flags, chunk.lines)
    bad = flags.bad
    keep = pa.array(~bad)
    any_bad = bool(bad.any())
    columns = {name: values.filter(keep) if any_bad else values for name, values in out.items()}
    if chunk.raw is not None:  # each row's raw record travels with it (for late rejects)
        columns[RAW] = chunk.raw.filter(keep) if any_bad else chunk.raw
    rejects = list(chunk.rejects)
    bad_idx = np.flatnonzero(bad)
    if len(bad_idx):
        if chunk.raw is not None:  # the raw record, from the parse that produced the row
            raws = chunk.raw.take(pa.array(bad_idx)).to_pylist()
            fields = [record_fields(r) for r in raws]
        else:
            fields = [tuple(r.values()) for r in chunk.table.take(pa.array(bad_idx)).to_pylist()]
        for i, row in zip(bad_idx, fields, strict=True):
            rejects.append(Reject(int(chunk.lines[i]), flags.code[i], flags.reason[i], row))
    return Transformed(columns=columns, lines=chunk.lines[~bad], rejects=rejects)


def _in_chunk_duplicates(
    dataset: Dataset, out: dict[str, pa.Array], flags: _Flags, lines: np.ndarray
) -> None:
    """A business key seen on an earlier line of the chunk: reject, naming that line.
    (Across chunks, the loader finds them.)"""
    if not len(lines):
        return
    rows = np.flatnonzero(~flags.bad)
    keys = pa.table({**{c: out[c].take(pa.array(rows)) for c in dataset.key_plain}, "_row": pa.array(rows)})
    if (
        pc.count_distinct(keys.column(dataset.key_plain[0])).as_py() == len(rows)
        and len(dataset.key_plain) == 1
    ):
        return  # the common case: every key once
    first = keys.group_by(list(dataset.key_plain), use_threads=False).aggregate([("_row", "min")])
    joined = keys.join(first, list(dataset.key_plain), use_threads=False)
    row = joined.column("_row").to_numpy()
    first_row = joined.column("_row_min").to_numpy()
    dup = row != first_row
    if not dup.any():
        return
    mask = np.zeros(len(lines), dtype=bool)
    mask[row[dup]] = True
    reasons = np.full(len(lines), None, dtype=object)
    names = ", ".join(dataset.business_key)
    for r, f in zip(row[dup], first_row[dup], strict=True):
        reasons[r] = f"{names} already appears on line {lines[f]}"
    flags.set(mask, "duplicate_in_file", reasons)


def _column(col: Column, raw: pa.Array, flags: _Flags, parsed: _Parsed, out: dict[str, pa.Array]) -> None:
    s = pc.utf8_trim_whitespace(raw)
    if col.normalize == "lower":
        s = pc.utf8_lower(s)
    elif col.normalize == "upper":
        s = pc.utf8_upper(s)
    empty = pc.equal(s, "")
    missing = as_mask(empty)
    if missing.any():
        if col.required:
            flags.set(missing, "missing_value", f"{col.name} is empty")
        elif col.default is not None:
            s = pc.if_else(empty, col.default, s)
            empty = pc.equal(s, "")
            missing = as_mask(empty)
    present = ~missing
    parsed.text[col.name] = s
    values = Values(s, present, present)
    if col.type in ("integer", "decimal"):
        values = _numeric(col, s, present, flags, parsed)
    elif col.type in ("timestamp", "date"):
        _temporal(col, s, empty, present, flags, out)
    for rule in value_checks(col.type):  # the table's value checks, in its order
        setting = col.get(rule.key)
        if setting is not None and rule.code is not None and rule.data is not None:
            finding = rule.data(col, setting, values)
            flags.set(finding.mask, rule.code, _worded(col, s, finding))
    if col.type not in ("timestamp", "date"):
        out[col.sql[0]] = pc.if_else(empty, pa.scalar(None, pa.string()), s)


def _numeric(col: Column, s: pa.Array, present: np.ndarray, flags: _Flags, parsed: _Parsed) -> Values:
    """Parse a number column: malformed values rejected; the others' value, for the checks
    (min, max, scale) and for derived columns."""
    name = col.name
    integer = col.type == "integer"
    wellformed = as_mask(pc.match_substring_regex(s, _INT_RE if integer else _DEC_RE))
    malformed = present & ~wellformed
    what = "a whole number" if integer else ("a number with a dot for decimals and no thousands separator")
    flags.set(
        malformed, "bad_integer" if integer else "bad_decimal", _quoted(s, malformed, name, f"is not {what}")
    )
    ok = present & wellformed
    safe = pc.if_else(pa.array(ok), s, "0")
    number = np.where(ok, pc.cast(safe, pa.float64()).to_numpy(zero_copy_only=False), np.nan)
    parsed.number[name] = number
    return Values(s, present, ok, number)


def _temporal(
    col: Column, s: pa.Array, empty: pa.Array, present: np.ndarray, flags: _Flags, out: dict[str, pa.Array]
) -> None:
    name = col.name
    fmt = col.fmt or "%Y-%m-%d %H:%M:%S"
    stamp = pc.strptime(s, format=fmt, unit="s", error_is_null=True)
    # strptime rolls 2025-02-30 over to March: a valid value prints back as it was read
    exact = pc.equal(pc.strftime(stamp, format=fmt), s)
    valid = as_mask(exact)
    invalid = present & ~valid
    flags.set(
        invalid,
        "bad_timestamp" if col.type == "timestamp" else "bad_date",
        _quoted(s, invalid, name, f"is not a valid date/time in the form {fmt}"),
    )
    # PostgreSQL has no year 0 (nor BC years in this form) and ends at year 294276
    # (timestamps) or 5874897 (dates): refuse the row here, never the whole COPY
    last = _PG_LAST_YEAR[col.type]
    year = pc.year(stamp)
    inside = as_mask(pc.and_(pc.greater_equal(year, 1), pc.less_equal(year, last)))
    outside = present & valid & ~inside
    flags.set(
        outside,
        "out_of_range",
        _quoted(s, outside, name, f"is outside PostgreSQL's range (years 1 to {last})"),
    )
    valid = valid & ~outside
    null = pa.scalar(None, pa.string())
    keep = pa.array(valid)
    if col.type == "timestamp" and fmt == "%Y-%m-%d %H:%M:%S":
        date_text = pc.utf8_slice_codeunits(s, 0, 10)
        time_text = pc.utf8_slice_codeunits(s, 11, 19)
    else:
        date_text = pc.strftime(stamp, format="%Y-%m-%d")
        time_text = pc.strftime(stamp, format="%H:%M:%S")
    if col.type == "date":
        out[col.sql[0]] = pc.if_else(keep, date_text, null)
    elif len(col.sql) == 2:
        out[col.sql[0]] = pc.if_else(keep, date_text, null)
        out[col.sql[1]] = pc.if_else(keep, time_text, null)
    else:
        out[col.sql[0]] = pc.if_else(keep, pc.strftime(stamp, format="%Y-%m-%d %H:%M:%S"), null)


def _derive(col: Column, parsed: _Parsed, flags: _Flags, out: dict[str, pa.Array]) -> None:
    """Fill an empty derived value; reject a stated one further off than the tolerance.
    Floats decide where they safely can; every row near a rounding tie or near the
    tolerance is settled in exact decimal arithmetic (at 99,999,999.99 a float is off by
    more than a millionth of a cent)."""
    assert col.derive is not None
    refs = {r: parsed.number[r] for r in set(_NAME_RE.findall(col.derive))}
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        unrounded = np.asarray(evaluate(col.derive, refs), dtype=float)
    scale = col.scale or 0
    computed = round_half_up(unrounded, scale)
    stated = parsed.number[col.name]
    text = parsed.text[col.name]
    empty = as_mask(pc.equal(text, ""))
    computable = np.isfinite(computed)
    fill = empty & computable
    compare = ~empty & computable & ~np.isnan(stated)
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(stated - computed)
        off = compare & (diff > col.tolerance)
        # floats carry ~1e-16 relative error: anything within a millionth of a unit of a
        # decision boundary (a half-cent tie, or the tolerance) is decided exactly
        margin = 1e-6 * np.maximum(1.0, np.abs(unrounded))
        scaled = np.abs(unrounded) * 10.0**scale
        near_tie = np.abs(scaled - np.floor(scaled) - 0.5) <= margin * 10.0**scale
        near_tol = compare & (np.abs(diff - col.tolerance) <= margin)
    exact_rows = np.flatnonzero(computable & (near_tie | near_tol) & (fill | compare))
    exact_text: dict[int, str] = {}
    if len(exact_rows):
        values = _exact(col, parsed, exact_rows, scale)
        tolerance = Decimal(repr(col.tolerance))
        stated_text = text.take(pa.array(exact_rows)).to_pylist()
        for i, value, given in zip(exact_rows, values, stated_text, strict=True):
            exact_text[int(i)] = f"{value:.{scale}f}"
            computed[i] = float(value)
            if compare[i]:
                off[i] = abs(Decimal(given) - value) > tolerance
    if fill.any():
        filled = np.full(len(computed), None, dtype=object)
        filled[fill] = np.char.mod(f"%.{scale}f", computed[fill])
        for row, value_text in exact_text.items():
            if fill[row]:
                filled[row] = value_text
        out[col.sql[0]] = pc.coalesce(out[col.sql[0]], pa.array(filled, pa.string()))
    if off.any():
        reasons = np.full(len(computed), None, dtype=object)
        for i, value in zip(
            np.flatnonzero(off), text.take(pa.array(np.flatnonzero(off))).to_pylist(), strict=True
        ):
            shown = exact_text.get(int(i), f"{computed[i]:.{scale}f}")
            reasons[i] = f"{col.name} {value} differs from {col.derive} = {shown}"
        flags.set(off, col.mismatch, reasons)  # the code the dataset declares (mismatch)
    low, high = col.get("min"), col.get("max")
    with np.errstate(invalid="ignore"):
        if low is not None:
            flags.set(fill & (computed < low), "out_of_range", f"computed {col.name} is below {low:g}")
        if high is not None:
            flags.set(fill & (computed > high), "out_of_range", f"computed {col.name} is above {high:g}")


def _exact(col: Column, parsed: _Parsed, rows: np.ndarray, scale: int) -> list[Decimal]:
    """The derived value of ``rows`` in decimal arithmetic, rounded half up to ``scale``."""
    assert col.derive is not None
    take = pa.array(rows)
    refs = {
        r: np.array([Decimal(v) for v in parsed.text[r].take(take).to_pylist()], dtype=object)
        for r in set(_NAME_RE.findall(col.derive))
    }
    step = Decimal(1).scaleb(-scale)
    with localcontext() as ctx:
        ctx.prec = 60
        values = evaluate(col.derive, refs, exact=True)
        return [Decimal(v).quantize(step, rounding=ROUND_HALF_UP) for v in values]
