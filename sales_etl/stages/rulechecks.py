"""What the column rules are made of (``rules.RULES`` is the table of them): the ``Rule``
type, the values a data check sees (``Values``) and what it finds (``Finding``), the
spec-time checks run when a dataset file is read, and the vectorised data checks the
transform runs on every chunk. A new rule's check functions go here, its entry in the
table. Pure: no I/O, no environment (numpy and Arrow compute only)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from sales_etl.core.reasons import RowCode, codes

if TYPE_CHECKING:
    from sales_etl.stages.spec import Column

TYPES = ("text", "integer", "decimal", "enum", "timestamp", "date")
NORMALIZE = ("trim", "lower", "upper")
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
NUMBER = (int, float)
BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")
MAX_SCALE = 30  # decimal places: the decimal parse reads 30 integer digits, floats far fewer
MAX_PATTERN = 1000  # characters of a pattern (a reject without a hint quotes it)
MAX_HINT = 200
MAX_FORMAT = 100
NUMERIC = ("integer", "decimal")
TEMPORAL = ("timestamp", "date")


@dataclass
class Values:
    """One column of a chunk as the value checks see it."""

    text: pa.Array  # normalised text ("" where empty)
    present: np.ndarray  # not empty
    ok: np.ndarray  # present and well-formed for the column's type
    number: np.ndarray | None = None  # the numeric value (integer and decimal columns)


@dataclass(frozen=True)
class Finding:
    """The rows a check rejects, and what is wrong with them: worded as ``<column> <value>
    <what>``, or ``<column> <what>`` when ``show_value`` is off or the column is sensitive
    (a sensitive value never reaches a rejects file's reason)."""

    mask: np.ndarray
    what: str
    show_value: bool = True


SpecCheck = Callable[[Any, str], str | None]  # (value, column type) -> the problem, or None
DataCheck = Callable[["Column", Any, Values], Finding]  # (column, the rule's value, values)


@dataclass(frozen=True)
class Rule:
    key: str  # the TOML key in [columns.<name>]
    kind: tuple[type, ...]  # the TOML type(s) it takes
    meaning: str  # one line, for the reader of this table
    spec: SpecCheck | None = None  # the spec-time check beyond its type
    types: tuple[str, ...] = ()  # the column types it applies to (() = every type)
    needed_by: tuple[str, ...] = ()  # column types that must have it
    needs: str | None = None  # another key it only makes sense with
    code: RowCode | None = None  # the reason code of the rows its data check rejects
    data: DataCheck | None = None  # the value check (None: the transform applies the key)
    need_problem: str = ""  # the message when a type in ``needed_by`` lacks it
    wrong_kind: str = ""  # the message for a value of another TOML type (default: generic)


# ------------------------------------------------------------------- spec-time checks


def one_of(choices: tuple[str, ...]) -> SpecCheck:
    def check(value: Any, ctype: str) -> str | None:
        return None if value in choices else f"{value!r} must be one of {', '.join(choices)}"

    return check


def an_identifier(value: Any, ctype: str) -> str | None:
    if isinstance(value, str) and IDENTIFIER.match(value):
        return None
    return f"{value!r} is not a valid SQL identifier (lower-case letters, digits, underscore; at most 63)"


def a_split(value: Any, ctype: str) -> str | None:
    if ctype != "timestamp" or len(value) != 2:
        return "only a timestamp splits, into [date, time]"
    return next((p for p in (an_identifier(v, ctype) for v in value) if p), None)


def a_regex(value: Any, ctype: str) -> str | None:
    if len(value) > MAX_PATTERN:
        return f"longer than {MAX_PATTERN} characters"
    try:
        re.compile(value)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    try:  # the data check runs it with Arrow's engine (RE2): no look-around, no back-reference
        pc.match_substring_regex(pa.nulls(1, pa.string()), value)  # compiles it (no pandas)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        return f"not a regular expression the data check can run (RE2): {one_line(str(exc))}"
    return None


def a_hint(value: Any, ctype: str) -> str | None:
    if len(value) > MAX_HINT or not value.isprintable():
        return f"must be one line of at most {MAX_HINT} printable characters"
    return None


def a_format(value: Any, ctype: str) -> str | None:
    """A strptime format the transform can accept a value in: a value it writes reads back
    and prints as it was (the transform's own test of every value). A format no value can
    pass (``%Q``, ``%f`` in whole seconds) would reject every row of every file."""
    if ctype not in TEMPORAL or not value:
        return None  # another column type refuses the key; an empty one is the default
    if len(value) > MAX_FORMAT:
        return f"longer than {MAX_FORMAT} characters"
    # 2001-01-01 00:00:00, built from a buffer (converting a Python value would import
    # pandas, and the worker reads every dataset file at start without it); in UTC for a
    # format with a zone
    zone = "UTC" if "%z" in value or "%Z" in value else None
    sample = pa.Array.from_buffers(
        pa.timestamp("s", tz=zone), 1, [None, pa.py_buffer(np.array([978_307_200], dtype=np.int64))]
    )
    try:
        text = pc.strftime(sample, format=value)
        back = pc.strptime(text, format=value, unit="s", error_is_null=True)
        again = pc.strftime(back, format=value)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError) as exc:
        return f"{value!r} is not a date/time format: {one_line(str(exc))}"
    if again.null_count or not pc.all(pc.equal(again, text)).as_py():
        return f"{value!r} does not read back what it writes: no value could pass it"
    return None


def enum_values(value: Any, ctype: str) -> str | None:
    if ctype == "enum" and (not value or not all(isinstance(v, str) for v in value)):
        return "an enum needs a list of allowed strings"
    return None


def text_only(value: Any, ctype: str) -> str | None:
    return "only text columns can be encrypted" if value and ctype != "text" else None


def a_row_code(value: Any, ctype: str) -> str | None:
    if value not in codes("row"):
        return f"{value!r} is not a row reason code (docs/reason-codes.md)"
    if not value.endswith("_mismatch"):  # e.g. nul_byte would tell the operator a falsehood
        mismatches = ", ".join(sorted(c for c in codes("row") if c.endswith("_mismatch")))
        return f"{value!r} is not a mismatch code ({mismatches})"
    return None


def not_negative(value: Any, ctype: str) -> str | None:
    if value != value:  # NaN
        return "nan is not a number"
    return None if value >= 0 else f"{value!r} must not be negative"


def scale_range(value: Any, ctype: str) -> str | None:
    if 0 <= value <= MAX_SCALE:
        return None
    return f"{value!r} must be 0 to {MAX_SCALE} decimal places"


def a_number(value: Any, ctype: str) -> str | None:
    return "nan is not a number" if value != value else None


def one_line(text: str) -> str:
    """``text`` as one line (a problem quoted from a library may hold line breaks)."""
    return " ".join(text.split())


def key_text(name: str) -> str:
    """A TOML key as a message shows it: bare when TOML writes it bare, else quoted with
    every control or non-ASCII character escaped (an error stays one line)."""
    return name if BARE_KEY.match(name) else json.dumps(name)


# ------------------------------------------------------------------------ data checks


def as_mask(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A boolean Arrow array as numpy, nulls as False."""
    return np.asarray(pc.fill_null(array, False).to_numpy(zero_copy_only=False), dtype=bool)


def over_max_length(col: Column, limit: int, v: Values) -> Finding:
    return Finding(
        as_mask(pc.greater(pc.utf8_length(v.text), limit)),
        f"is longer than {limit} characters",
        show_value=False,
    )


def not_matching(col: Column, pattern: str, v: Values) -> Finding:
    hint = col.get("pattern_hint")
    return Finding(
        v.present & ~as_mask(pc.match_substring_regex(v.text, pattern)),
        hint if hint is not None else f"does not match {pattern}",
    )


def not_allowed(col: Column, allowed: tuple[str, ...], v: Values) -> Finding:
    unknown = v.present & ~as_mask(pc.is_in(v.text, value_set=pa.array(list(allowed), pa.string())))
    return Finding(unknown, "is not one of " + ", ".join(allowed))


def over_scale(col: Column, scale: int, v: Values) -> Finding:
    over = v.ok & as_mask(pc.match_substring_regex(v.text, rf"\.\d{{{scale}}}\d*[1-9]"))
    return Finding(over, f"has more than {scale} decimal places")


def below_minimum(col: Column, bound: float, v: Values) -> Finding:
    assert v.number is not None
    with np.errstate(invalid="ignore"):
        return Finding(v.ok & (v.number < bound), f"is below {bound:g}")


def above_maximum(col: Column, bound: float, v: Values) -> Finding:
    assert v.number is not None
    with np.errstate(invalid="ignore"):
        return Finding(v.ok & (v.number > bound), f"is above {bound:g}")
