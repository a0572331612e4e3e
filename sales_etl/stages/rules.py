"""The column rules of a dataset file, each declared once: ``RULES``.

One entry per TOML key of a ``[columns.<name>]`` table: the key, the TOML type(s) it takes,
the spec-time check (run when the dataset file is read: ``datasets.reader.parse_dataset``), and, for
a rule that checks values, the reason code and the vectorised data check the transform runs
on every chunk. The spec parser knows nothing of any key but through this table (allowed
keys, types, checks, defaults, what a column type needs); the transform runs every value
check of the table in table order (the first reason found wins, so the order is the
behaviour). Adding a value rule is one ``Rule`` here plus its check function in
``rulechecks`` (a pure function of the column and its parsed values); a key that changes
how a value is parsed or stored (``type``, ``sql``, ``split``, ``normalize``, ``format``,
``default``, ``derive``) is applied by the transform itself, and its entry here still
declares and checks it.

Pure: no I/O, no environment (numpy and Arrow compute only).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sales_etl.stages.rulechecks import (
    NORMALIZE,
    NUMBER,
    NUMERIC,
    TEMPORAL,
    TYPES,
    Rule,
    a_format,
    a_hint,
    a_number,
    a_regex,
    a_row_code,
    a_split,
    above_maximum,
    an_identifier,
    below_minimum,
    enum_values,
    key_text,
    not_allowed,
    not_matching,
    not_negative,
    one_of,
    over_max_length,
    over_scale,
    scale_range,
    text_only,
)

# ---------------------------------------------------------------------------- the table


RULES: tuple[Rule, ...] = (
    # how a value is read and where it lands (applied by the transform and the loader)
    Rule(
        "type", (str,), "the column's type (checked first: the other keys depend on it)", spec=one_of(TYPES)
    ),
    Rule("sql", (str,), "the SQL column it lands in (default: its name)", spec=an_identifier),
    Rule(
        "split",
        (list,),
        "a timestamp into [date column, time column]",
        spec=a_split,
        types=("timestamp",),
        wrong_kind="only a timestamp splits, into [date, time]",
    ),
    Rule("required", (bool,), "an empty value rejects the row", code="missing_value"),
    Rule(
        "normalize", (str,), "trim (the default), lower or upper, before every check", spec=one_of(NORMALIZE)
    ),
    Rule("default", (str,), "the value used when it is empty"),
    Rule("format", (str,), "strptime format of a timestamp or date", spec=a_format, types=TEMPORAL),
    Rule("sensitive", (bool,), "encrypted, with a blind index beside it", spec=text_only, types=("text",)),
    Rule(
        "derive",
        (str,),
        "arithmetic over number columns: fills an empty value, checks a "
        "stated one (datasets.reader checks the expression)",
        types=NUMERIC,
    ),
    Rule("tolerance", NUMBER, "how far a stated derived value may be off", spec=not_negative, needs="derive"),
    Rule(
        "mismatch",
        (str,),
        "the reason code of a stated derived value too far off (default derived_mismatch)",
        spec=a_row_code,
        needs="derive",
    ),
    # value checks, in the order they run (the first reason found wins)
    Rule(
        "max_length",
        (int,),
        "at most this many characters",
        types=("text",),
        code="too_long",
        data=over_max_length,
        spec=not_negative,
    ),
    Rule(
        "pattern",
        (str,),
        "a regular expression the value matches",
        spec=a_regex,
        types=("text",),
        code="bad_format",
        data=not_matching,
    ),
    Rule(
        "pattern_hint",
        (str,),
        "how a reject for the pattern words what is expected",
        spec=a_hint,
        types=("text",),
        needs="pattern",
    ),
    Rule(
        "values",
        (list,),
        "the allowed values of an enum",
        spec=enum_values,
        types=("enum",),
        needed_by=("enum",),
        code="bad_value",
        data=not_allowed,
        need_problem="an enum needs a list of allowed strings",
    ),
    Rule(
        "scale",
        (int,),
        "decimal places at most",
        types=("decimal",),
        needed_by=("decimal",),
        code="too_many_decimals",
        data=over_scale,
        spec=scale_range,
        need_problem="a decimal needs its number of decimal places",
    ),
    Rule(
        "min",
        NUMBER,
        "the smallest value",
        types=NUMERIC,
        code="out_of_range",
        data=below_minimum,
        spec=a_number,
    ),
    Rule(
        "max",
        NUMBER,
        "the largest value",
        types=NUMERIC,
        code="out_of_range",
        data=above_maximum,
        spec=a_number,
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
