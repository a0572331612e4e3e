"""Chunk -> (valid rows, rejects). Pure and vectorised: no I/O, no environment.

Every row of a chunk ends in exactly one of two places: the valid frame (its SQL columns,
normalised, ready to protect and COPY) or the rejects, with the first reason found. Each
column is validated on its distinct values (``pd.factorize``), so low-cardinality columns
cost almost nothing and no Python loop runs per row except for the rows rejected.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from .datasets import Column, Dataset
from .extract import Chunk, Header, Reject

_INT_RE = r"[+-]?\d{1,18}"
_DEC_RE = r"[+-]?(?:\d{1,30}(?:\.\d*)?|\.\d+)"
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass
class Transformed:
    frame: pd.DataFrame  # one column per SQL column (data columns only), object dtype
    lines: np.ndarray  # line number of each valid row
    rejects: list[Reject]

    def __len__(self) -> int:
        return len(self.frame)


def round_half_up(values: np.ndarray, scale: int) -> np.ndarray:
    """Round like a cashier (half away from zero), robust to binary floats (2.675 -> 2.68)."""
    factor = 10.0**scale
    return np.sign(values) * np.floor(np.abs(values) * factor + 0.5 + 1e-7) / factor


class _Flags:
    """The first reject reason of each row."""

    def __init__(self, n: int) -> None:
        self.code = np.full(n, None, dtype=object)
        self.reason = np.full(n, None, dtype=object)

    def set(self, mask: np.ndarray, code: str, reason: str | np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool) & pd.isna(self.code)
        if not mask.any():
            return
        self.code[mask] = code
        self.reason[mask] = reason if isinstance(reason, str) else reason[mask]

    @property
    def bad(self) -> np.ndarray:
        return ~pd.isna(self.code)


def _per_value(values: pd.Series, fn: Callable[[pd.Series], Any]) -> np.ndarray:
    """Apply a vectorised check to the distinct values only, broadcast back to rows."""
    codes, uniques = pd.factorize(values, use_na_sentinel=False)
    return np.asarray(fn(pd.Series(uniques, dtype=object)))[codes]


def _quoted(values: pd.Series, mask: np.ndarray, template: str) -> np.ndarray:
    """Build a reason per flagged row (a loop over the rejected rows only)."""
    out = np.full(len(values), None, dtype=object)
    for i in np.flatnonzero(mask):
        out[i] = template.format(value=_show(values.iat[i]))
    return out


def _show(value: object) -> str:
    text = str(value)
    return repr(text if len(text) <= 60 else text[:57] + "...")


class _Parsed:
    """Per column: the normalised text, and the numeric value where the type has one."""

    def __init__(self) -> None:
        self.text: dict[str, pd.Series] = {}
        self.number: dict[str, np.ndarray] = {}


def transform(chunk: Chunk, header: Header, dataset: Dataset) -> Transformed:
    n = len(chunk.rows)
    flags = _Flags(n)
    columns = list(zip(*chunk.rows, strict=True)) if n else []
    parsed = _Parsed()
    out: dict[str, np.ndarray] = {}
    for col in dataset.columns:
        pos = header.positions.get(col.name)
        raw = pd.Series(columns[pos] if pos is not None and n else [""] * n, dtype=object)
        _column(col, raw, flags, parsed, out)
    for col in dataset.columns:
        if col.derive:
            _derive(col, parsed, flags, out)
    bad = flags.bad
    good = ~bad
    frame = pd.DataFrame({name: values[good] for name, values in out.items()})
    lines = np.asarray(chunk.lines, dtype=np.int64)
    rejects = list(chunk.rejects)
    for i in np.flatnonzero(bad):
        rejects.append(Reject(int(lines[i]), flags.code[i], flags.reason[i],
                              tuple(chunk.rows[i])))
    return Transformed(frame=frame, lines=lines[good], rejects=rejects)


def _column(col: Column, raw: pd.Series, flags: _Flags, parsed: _Parsed,
            out: dict[str, np.ndarray]) -> None:
    s = raw.str.strip()
    if col.normalize == "lower":
        s = s.str.lower()
    elif col.normalize == "upper":
        s = s.str.upper()
    missing = (s == "").to_numpy()
    if missing.any():
        if col.required:
            flags.set(missing, "missing_value", f"{col.name} is empty")
        elif col.default is not None:
            s = s.where(~missing, col.default)
            missing = np.zeros(len(s), dtype=bool)
    present = ~missing
    name = col.name
    values: Any
    if col.type == "text":
        if col.max_length is not None:
            long = _per_value(s, lambda u: u.str.len() > col.max_length)
            flags.set(long, "too_long", f"{name} is longer than {col.max_length} characters")
        if col.pattern is not None:
            badfmt = present & ~_per_value(s, lambda u: u.str.fullmatch(col.pattern).fillna(False))
            flags.set(badfmt, "bad_format", _quoted(s, badfmt, f"{name} {{value}} "
                      "must start with a letter or digit and hold only letters, digits, _ . : -"
                      if col.pattern.startswith("^[A-Za-z0-9]") else
                      f"{name} {{value}} does not match {col.pattern}"))
        values = s.to_numpy(dtype=object)
    elif col.type == "enum":
        unknown = present & ~_per_value(s, lambda u: u.isin(col.values))
        flags.set(unknown, "bad_value", _quoted(s, unknown, f"{name} {{value}} is not one of "
                                                 + ", ".join(col.values)))
        values = s.to_numpy(dtype=object)
    elif col.type in ("integer", "decimal"):
        values = _numeric(col, s, present, flags, parsed)
    else:
        values = _temporal(col, s, present, flags, out)
        if values is None:
            parsed.text[name] = s
            return
    values = np.where(missing, None, values)
    out[col.sql[0]] = values
    parsed.text[name] = s


def _numeric(col: Column, s: pd.Series, present: np.ndarray, flags: _Flags,
             parsed: _Parsed) -> np.ndarray:
    name = col.name
    pattern = _INT_RE if col.type == "integer" else _DEC_RE
    wellformed = _per_value(s, lambda u: u.str.fullmatch(pattern).fillna(False))
    malformed = present & ~wellformed
    if col.type == "integer":
        what = "a whole number"
        code = "bad_integer"
    else:
        what = "a number with a dot for decimals and no thousands separator"
        code = "bad_decimal"
    flags.set(malformed, code, _quoted(s, malformed, f"{name} {{value}} is not {what}"))
    ok = present & wellformed
    number = np.full(len(s), np.nan)
    if ok.any():
        number[ok] = pd.to_numeric(s[ok], errors="coerce").to_numpy(dtype=float)
    if col.type == "decimal" and col.scale is not None:
        places = _per_value(s, lambda u: u.str.extract(r"\.(\d*?)0*$", expand=False)
                            .fillna("").str.len())
        over = ok & (places > col.scale)
        flags.set(over, "too_many_decimals",
                  _quoted(s, over, f"{name} {{value}} has more than {col.scale} decimal places"))
    if col.minimum is not None:
        low = ok & (number < col.minimum)
        flags.set(low, "out_of_range", _quoted(s, low, f"{name} {{value}} is below {col.minimum:g}"))
    if col.maximum is not None:
        high = ok & (number > col.maximum)
        flags.set(high, "out_of_range", _quoted(s, high, f"{name} {{value}} is above {col.maximum:g}"))
    parsed.number[name] = number
    return s.to_numpy(dtype=object)


def _temporal(col: Column, s: pd.Series, present: np.ndarray, flags: _Flags,
              out: dict[str, Any]) -> Any:
    name = col.name
    stamp = pd.to_datetime(s.where(present, None), format=col.fmt, errors="coerce")
    invalid = present & stamp.isna().to_numpy()
    flags.set(invalid, "bad_timestamp" if col.type == "timestamp" else "bad_date",
              _quoted(s, invalid, f"{name} {{value}} is not a valid date/time in the form {col.fmt}"))
    valid = ~stamp.isna().to_numpy()
    if col.type == "timestamp" and col.fmt == "%Y-%m-%d %H:%M:%S":
        date_text, time_text = s.str.slice(0, 10), s.str.slice(11, 19)  # already validated
    else:
        date_text = stamp.dt.strftime("%Y-%m-%d")
        time_text = stamp.dt.strftime("%H:%M:%S")
    if col.type == "date":
        return np.where(valid, date_text.to_numpy(dtype=object), None)
    if len(col.sql) == 2:
        out[col.sql[0]] = np.where(valid, date_text.to_numpy(dtype=object), None)
        out[col.sql[1]] = np.where(valid, time_text.to_numpy(dtype=object), None)
        return None
    iso = stamp.dt.strftime("%Y-%m-%d %H:%M:%S")
    return np.where(valid, iso.to_numpy(dtype=object), None)


def _derive(col: Column, parsed: _Parsed, flags: _Flags, out: dict[str, np.ndarray]) -> None:
    assert col.derive is not None
    refs = {r: parsed.number[r] for r in set(_NAME_RE.findall(col.derive))}
    with np.errstate(invalid="ignore", over="ignore"):
        computed = pd.eval(col.derive, local_dict=refs, engine="python")
    scale = col.scale or 0
    computed = round_half_up(np.asarray(computed, dtype=float), scale)
    stated = parsed.number[col.name]
    text = parsed.text[col.name]
    empty = (text == "").to_numpy()
    computable = ~np.isnan(computed)
    fill = empty & computable
    values = out[col.sql[0]].copy()
    if fill.any():
        values[fill] = np.char.mod(f"%.{scale}f", computed[fill]).astype(object)
    off = ~empty & computable & ~np.isnan(stated) & (np.abs(stated - computed) > col.tolerance + 1e-9)
    if off.any():
        reasons = np.full(len(values), None, dtype=object)
        for i in np.flatnonzero(off):
            reasons[i] = (f"{col.name} {text.iat[i]} differs from {col.derive} = "
                          f"{computed[i]:.{scale}f}")
        flags.set(off, "total_mismatch" if col.name == "total_amount" else "derived_mismatch",
                  reasons)
    if col.minimum is not None:
        low = fill & (computed < col.minimum)
        flags.set(low, "out_of_range", f"computed {col.name} is below {col.minimum:g}")
    out[col.sql[0]] = values
