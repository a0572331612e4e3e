"""The column rules of a dataset file, each declared once: ``RULES``.

One entry per TOML key of a ``[columns.<name>]`` table: the key, the TOML type(s) it takes,
the spec-time check (run when the dataset file is read: ``datasets.parse_dataset``), and, for
a rule that checks values, the reason code and the vectorised data check the transform runs
on every chunk. The spec parser knows nothing of any key but through this table (allowed
keys, types, checks, defaults, what a column type needs); the transform runs every value
check of the table in table order (the first reason found wins, so the order is the
behaviour). Adding a value rule is one ``Rule`` here plus its check function (a pure
function of the column and its parsed values); a key that changes how a value is parsed or
stored (``type``, ``sql``, ``split``, ``normalize``, ``format``, ``default``, ``derive``) is
applied by the transform itself, and its entry here still declares and checks it.

Pure: no I/O, no environment (numpy and Arrow compute only).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
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


def _one_of(choices: tuple[str, ...]) -> SpecCheck:
    def check(value: Any, ctype: str) -> str | None:
        return None if value in choices else f"{value!r} must be one of {', '.join(choices)}"

    return check


def _identifier(value: Any, ctype: str) -> str | None:
    if isinstance(value, str) and IDENTIFIER.match(value):
        return None
    return f"{value!r} is not a valid SQL identifier (lower-case letters, digits, underscore; at most 63)"


def _split(value: Any, ctype: str) -> str | None:
    if ctype != "timestamp" or len(value) != 2:
        return "only a timestamp splits, into [date, time]"
    return next((p for p in (_identifier(v, ctype) for v in value) if p), None)


def _regex(value: Any, ctype: str) -> str | None:
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


def _hint(value: Any, ctype: str) -> str | None:
    if len(value) > MAX_HINT or not value.isprintable():
        return f"must be one line of at most {MAX_HINT} printable characters"
    return None


def _format(value: Any, ctype: str) -> str | None:
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


def _enum_values(value: Any, ctype: str) -> str | None:
    if ctype == "enum" and (not value or not all(isinstance(v, str) for v in value)):
        return "an enum needs a list of allowed strings"
    return None


def _text_only(value: Any, ctype: str) -> str | None:
    return "only text columns can be encrypted" if value and ctype != "text" else None


def _row_code(value: Any, ctype: str) -> str | None:
    if value not in codes("row"):
        return f"{value!r} is not a row reason code (docs/reason-codes.md)"
    if not value.endswith("_mismatch"):  # e.g. nul_byte would tell the operator a falsehood
        mismatches = ", ".join(sorted(c for c in codes("row") if c.endswith("_mismatch")))
        return f"{value!r} is not a mismatch code ({mismatches})"
    return None


def _not_negative(value: Any, ctype: str) -> str | None:
    if value != value:  # NaN
        return "nan is not a number"
    return None if value >= 0 else f"{value!r} must not be negative"


def _scale_range(value: Any, ctype: str) -> str | None:
    if 0 <= value <= MAX_SCALE:
        return None
    return f"{value!r} must be 0 to {MAX_SCALE} decimal places"


def _a_number(value: Any, ctype: str) -> str | None:
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


def _max_length(col: Column, limit: int, v: Values) -> Finding:
    return Finding(
        as_mask(pc.greater(pc.utf8_length(v.text), limit)),
        f"is longer than {limit} characters",
        show_value=False,
    )


def _pattern(col: Column, pattern: str, v: Values) -> Finding:
    hint = col.get("pattern_hint")
    return Finding(
        v.present & ~as_mask(pc.match_substring_regex(v.text, pattern)),
        hint if hint is not None else f"does not match {pattern}",
    )


def _values(col: Column, allowed: tuple[str, ...], v: Values) -> Finding:
    unknown = v.present & ~as_mask(pc.is_in(v.text, value_set=pa.array(list(allowed), pa.string())))
    return Finding(unknown, "is not one of " + ", ".join(allowed))


def _scale(col: Column, scale: int, v: Values) -> Finding:
    over = v.ok & as_mask(pc.match_substring_regex(v.text, rf"\.\d{{{scale}}}\d*[1-9]"))
    return Finding(over, f"has more than {scale} decimal places")


def _minimum(col: Column, bound: float, v: Values) -> Finding:
    assert v.number is not None
    with np.errstate(invalid="ignore"):
        return Finding(v.ok & (v.number < bound), f"is below {bound:g}")


def _maximum(col: Column, bound: float, v: Values) -> Finding:
    assert v.number is not None
    with np.errstate(invalid="ignore"):
        return Finding(v.ok & (v.number > bound), f"is above {bound:g}")


# ---------------------------------------------------------------------------- the table


RULES: tuple[Rule, ...] = (
    # how a value is read and where it lands (applied by the transform and the loader)
    Rule(
        "type", (str,), "the column's type (checked first: the other keys depend on it)", spec=_one_of(TYPES)
    ),
    Rule("sql", (str,), "the SQL column it lands in (default: its name)", spec=_identifier),
    Rule(
        "split",
        (list,),
        "a timestamp into [date column, time column]",
        spec=_split,
        types=("timestamp",),
        wrong_kind="only a timestamp splits, into [date, time]",
    ),
    Rule("required", (bool,), "an empty value rejects the row", code="missing_value"),
    Rule(
        "normalize", (str,), "trim (the default), lower or upper, before every check", spec=_one_of(NORMALIZE)
    ),
    Rule("default", (str,), "the value used when it is empty"),
    Rule("format", (str,), "strptime format of a timestamp or date", spec=_format, types=TEMPORAL),
    Rule("sensitive", (bool,), "encrypted, with a blind index beside it", spec=_text_only, types=("text",)),
    Rule(
        "derive",
        (str,),
        "arithmetic over number columns: fills an empty value, checks a "
        "stated one (datasets.parse_dataset checks the expression)",
        types=NUMERIC,
    ),
    Rule(
        "tolerance", NUMBER, "how far a stated derived value may be off", spec=_not_negative, needs="derive"
    ),
    Rule(
        "mismatch",
        (str,),
        "the reason code of a stated derived value too far off (default derived_mismatch)",
        spec=_row_code,
        needs="derive",
    ),
    # value checks, in the order they run (the first reason found wins)
    Rule(
        "max_length",
        (int,),
        "at most this many characters",
        types=("text",),
        code="too_long",
        data=_max_length,
        spec=_not_negative,
    ),
    Rule(
        "pattern",
        (str,),
        "a regular expression the value matches",
        spec=_regex,
        types=("text",),
        code="bad_format",
        data=_pattern,
    ),
    Rule(
        "pattern_hint",
        (str,),
        "how a reject for the pattern words what is expected",
        spec=_hint,
        types=("text",),
        needs="pattern",
    ),
    Rule(
        "values",
        (list,),
        "the allowed values of an enum",
        spec=_enum_values,
        types=("enum",),
        needed_by=("enum",),
        code="bad_value",
        data=_values,
        need_problem="an enum needs a list of allowed strings",
    ),
    Rule(
        "scale",
        (int,),
        "decimal places at most",
        types=("decimal",),
        needed_by=("decimal",),
        code="too_many_decimals",
        data=_scale,
        spec=_scale_range,
        need_problem="a decimal needs its number of decimal places",
    ),
    Rule(
        "min", NUMBER, "the smallest value", types=NUMERIC, code="out_of_range", data=_minimum, spec=_a_number
    ),
    Rule(
        "max", NUMBER, "the largest value", types=NUMERIC, code="out_of_range", data=_maximum, spec=_a_number
    ),
)

BY_KEY: dict[str, Rule] = {r.key: r for r in RULES}


@cache
def value_checks(column_type: str) -> tuple[Rule, ...]:
    """The table's value checks that apply to a column type, in the order they run."""
    return tuple(r for r in RULES if r.data is not None and (not r.types or column_type in r.types))


def spec_problems(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Every problem of one ``[columns.<name>]`` table, as (key, what is wrong): unknown keys
    first, then the type, then each key in table order (its TOML type, its own check, the
    column types it applies to, what it needs) and the keys its column type needs. The spec
    parser reports the first. (A TOML boolean is never a number here, though Python's
    ``bool`` is an ``int``; a key set to false turns nothing on, so it fits any column.)"""
    if not isinstance(raw, dict):
        return [("", f"must be a table of keys ([columns.<name>] with a type), not {raw!r}"[:200])]
    unknown = sorted(set(raw) - set(BY_KEY))
    if unknown:
        return [("", f"unknown key(s) {', '.join(key_text(k) for k in unknown)}")]
    ctype = raw.get("type")
    if ctype not in TYPES:
        return [("type", f"{ctype!r} must be one of {', '.join(TYPES)}")]
    problems: list[tuple[str, str]] = []
    for rule in RULES:
        if rule.key not in raw:
            if ctype in rule.needed_by:
                problems.append((rule.key, rule.need_problem or f"a {ctype} needs {rule.key}"))
            continue
        value = raw[rule.key]
        if not isinstance(value, rule.kind) or (isinstance(value, bool) and bool not in rule.kind):
            problems.append((rule.key, rule.wrong_kind or f"{value!r} has the wrong type"))
            continue
        problem = rule.spec(value, ctype) if rule.spec is not None else None
        if problem is None and rule.types and ctype not in rule.types and value is not False:
            problem = f"only {' or '.join(rule.types)} columns take it, not {ctype}"
        if problem is None and rule.needs is not None and rule.needs not in raw:
            problem = f"only with {rule.needs}"
        if problem is not None:
            problems.append((rule.key, problem))
    return problems
