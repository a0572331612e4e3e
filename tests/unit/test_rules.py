"""The column rule table (sales_etl/stages/rules.py): it alone decides what a dataset file may say
and which value checks run, in which order, with which reason code."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sales_etl.core.errors import ConfigError
from sales_etl.core.reasons import codes
from sales_etl.datasets.reader import parse_dataset
from sales_etl.stages.extract import iter_chunks
from sales_etl.stages.records import row_reject
from sales_etl.stages.rulechecks import Values
from sales_etl.stages.rules import BY_KEY, RULES, spec_problems, value_checks
from sales_etl.stages.transform import transform

KEY = 'name = "x"\nbusiness_key = ["id"]\n[columns.id]\ntype = "text"\nrequired = true\n'


def dataset(tmp_path: Path, columns: str) -> Path:
    path = tmp_path / "x.toml"
    path.write_text(KEY + columns)
    return path


def rejects(tmp_path: Path, columns: str, text: str) -> list[tuple[int, str, str]]:
    ds = parse_dataset(dataset(tmp_path, columns))
    header, chunks = iter_chunks(io.BytesIO(text.encode()), ds, "t.csv", 100)
    return [(r.line, r.code, r.reason) for c in chunks for r in transform(c, header, ds).rejects]


def test_every_key_is_declared_once_and_every_value_check_has_a_code() -> None:
    assert len(BY_KEY) == len(RULES)
    for rule in RULES:
        assert rule.meaning and "\n" not in rule.meaning
        assert (rule.data is None) or rule.code in codes("row"), rule.key
        assert rule.needs is None or rule.needs in BY_KEY


def test_value_checks_run_in_table_order_per_type() -> None:
    assert [r.key for r in value_checks("text")] == ["max_length", "pattern"]
    assert [r.key for r in value_checks("decimal")] == ["scale", "min", "max"]
    assert [r.key for r in value_checks("integer")] == ["min", "max"]
    assert [r.key for r in value_checks("enum")] == ["values"]
    assert value_checks("timestamp") == ()


@pytest.mark.parametrize(
    ("raw", "key", "words"),
    [
        ({"type": "text", "colour": 1}, "", "unknown key(s) colour"),
        ({"type": "blob"}, "type", "must be one of"),
        ({}, "type", "None must be one of"),
        ({"type": "text", "max_length": "5"}, "max_length", "wrong type"),
        ({"type": "enum"}, "values", "an enum needs a list of allowed strings"),
        ({"type": "enum", "values": [1]}, "values", "an enum needs a list of allowed strings"),
        ({"type": "decimal"}, "scale", "a decimal needs its number of decimal places"),
        ({"type": "decimal", "scale": -1}, "scale", "must be 0 to 30 decimal places"),
        ({"type": "integer", "sensitive": True}, "sensitive", "only text columns"),
        ({"type": "text", "split": ["a", "b"]}, "split", "only a timestamp splits"),
        ({"type": "timestamp", "split": ["a", "B"]}, "split", "not a valid SQL identifier"),
        ({"type": "text", "pattern": "("}, "pattern", "not a regular expression"),
        ({"type": "text", "pattern_hint": "x"}, "pattern_hint", "only with pattern"),
        ({"type": "decimal", "scale": 2, "mismatch": "total_mismatch"}, "mismatch", "only with derive"),
        (
            {"type": "decimal", "scale": 2, "derive": "a", "mismatch": "totl_mismatch"},
            "mismatch",
            "not a row reason code",
        ),
        ({"type": "text", "normalize": "title"}, "normalize", "must be one of"),
        (
            {"type": "decimal", "scale": 2, "derive": "a", "mismatch": "nul_byte"},
            "mismatch",
            "'nul_byte' is not a mismatch code (derived_mismatch, total_mismatch)",
        ),
        # a TOML boolean is not a number (Python's bool is an int): refused, not a crash later
        ({"type": "text", "max_length": True}, "max_length", "wrong type"),
        ({"type": "decimal", "scale": True}, "scale", "wrong type"),
        ({"type": "integer", "min": True}, "min", "wrong type"),
        # a key on a column type it does not apply to is refused, never silently ignored
        ({"type": "integer", "max_length": 3}, "max_length", "only text columns take it, not integer"),
        ({"type": "decimal", "scale": 2, "pattern": "^1"}, "pattern", "only text columns take it"),
        ({"type": "text", "values": ["a"]}, "values", "only enum columns take it, not text"),
        ({"type": "integer", "scale": 2}, "scale", "only decimal columns take it, not integer"),
        ({"type": "text", "min": 2}, "min", "only integer or decimal columns take it, not text"),
        ({"type": "text", "format": "%Y"}, "format", "only timestamp or date columns take it"),
        ({"type": "integer", "pattern_hint": "x"}, "pattern_hint", "only text columns take it"),
        ({"type": "text", "derive": "a"}, "derive", "only integer or decimal columns take it"),
        ({"type": "decimal", "scale": 2, "tolerance": 1}, "tolerance", "only with derive"),
        # values the data checks cannot run: refused when the file is read
        ({"type": "decimal", "scale": 400}, "scale", "must be 0 to 30 decimal places"),
        ({"type": "decimal", "scale": 2**63 - 1}, "scale", "must be 0 to 30 decimal places"),
        ({"type": "text", "max_length": -1}, "max_length", "must not be negative"),
        ({"type": "integer", "min": float("nan")}, "min", "nan is not a number"),
        (
            {"type": "decimal", "scale": 2, "derive": "a", "tolerance": float("nan")},
            "tolerance",
            "nan is not a number",
        ),
        ({"type": "text", "pattern": "^(a)\\1$"}, "pattern", "the data check can run (RE2)"),
        ({"type": "text", "pattern": "^(?=a)a$"}, "pattern", "the data check can run (RE2)"),
        ({"type": "text", "pattern": "^a{2000}$"}, "pattern", "the data check can run (RE2)"),
        ({"type": "text", "pattern": "a" * 1001}, "pattern", "longer than 1000 characters"),
        ({"type": "text", "pattern": "a", "pattern_hint": "two\nlines"}, "pattern_hint", "one line"),
        ({"type": "date", "format": "%Q"}, "format", "no value could pass it"),
        ({"type": "timestamp", "format": "%Y-%m-%d %H:%M:%S.%f"}, "format", "no value could pass"),
        ({"type": "date", "format": "%Y" * 51}, "format", "longer than 100 characters"),
    ],
)
def test_spec_problems_name_the_key(raw: dict[str, object], key: str, words: str) -> None:
    problems = spec_problems(raw)
    assert problems and problems[0][0] == key and words in problems[0][1], problems


def test_a_sound_column_has_no_problem() -> None:
    assert spec_problems({"type": "integer", "sensitive": False, "min": 1}) == []
    assert (
        spec_problems(
            {
                "type": "decimal",
                "scale": 2,
                "derive": "a * 2",
                "tolerance": 0.01,
                "mismatch": "derived_mismatch",
            }
        )
        == []
    )
    assert spec_problems({"type": "decimal", "scale": 30, "max": float("inf")}) == []
    assert spec_problems({"type": "timestamp", "format": "%d/%m/%Y %H:%M"}) == []
    assert spec_problems({"type": "timestamp", "format": "%Y-%m-%d"}) == []
    assert spec_problems({"type": "date", "format": "%d.%m.%Y"}) == []
    assert spec_problems({"type": "text", "pattern": "^a{2}[0-9]*$", "max_length": 0}) == []


FORMATS_OK = [
    "",
    "%Y-%m-%d",
    "%d/%m/%Y %H:%M",
    "%m/%d/%Y %I:%M:%S %p",
    "%Y-%m-%dT%H:%M:%S%z",
    "%Y-%m",
    "%d %b %Y",
    "%Y%m%d",
]
FORMATS_REFUSED = ["%Q", "%", "%Y-%m-%d %H:%M:%S.%f"]


@pytest.mark.parametrize("fmt", FORMATS_OK + FORMATS_REFUSED)
def test_a_format_is_refused_exactly_when_no_value_could_pass_it(tmp_path: Path, fmt: str) -> None:
    """The format check refuses only what the transform would reject in every row: the same
    column, its check bypassed, loads values written in an accepted format and none in a
    refused one (so no dataset that loaded rows before is refused now)."""
    from dataclasses import replace
    from datetime import UTC, datetime

    assert bool(spec_problems({"type": "timestamp", "format": fmt})) == (fmt in FORMATS_REFUSED)
    ds = parse_dataset(dataset(tmp_path, '[columns.t]\ntype = "timestamp"\n'))
    col = replace(ds.column("t"), options=(("format", fmt),))
    ds = replace(ds, columns=(ds.column("id"), col))
    stamps = [datetime(2025, 10, 9, 8, 30, 15, tzinfo=UTC), datetime(2001, 1, 1, tzinfo=UTC)]
    written = fmt or "%Y-%m-%d %H:%M:%S"  # (an empty format is the default)
    text = "id,t\n" + "".join(f'k{i},"{d.strftime(written)}"\n' for i, d in enumerate(stamps))
    header, chunks = iter_chunks(io.BytesIO(text.encode()), ds, "t.csv", 100)
    loaded = sum(len(transform(c, header, ds)) for c in chunks)
    assert (loaded > 0) == (fmt in FORMATS_OK), loaded


def test_every_shipped_dataset_passes_the_rule_table() -> None:
    from sales_etl.datasets.reader import SHIPPED_DIR

    for path in sorted(SHIPPED_DIR.glob("*.toml")):
        parse_dataset(path)


@pytest.mark.parametrize(
    ("columns", "where"),
    [
        (
            '[columns.c]\ntype = "decimal"\nscale = 2\nderive = "id * 2"\n',
            "columns.c.derive: id: only integer and decimal columns can be computed with",
        ),
        (
            '[columns.c]\ntype = "decimal"\nscale = 2\nderive = "d * 2"\n[columns.d]\ntype = "date"\n',
            "columns.c.derive: d: only integer and decimal columns can be computed with",
        ),
        (
            '[columns."c\\ny"]\ntype = "text"\nsql = "c"\ncolour = 1\n',
            'columns."c\\ny": unknown key(s) colour',
        ),
        ('[columns."a\\u2028b"]\ntype = "text"\n', 'columns."a\\u2028b".sql:'),
        ('[columns.c]\ntype = "text"\n"bad\\nkey" = 1\n', 'columns.c: unknown key(s) "bad\\nkey"'),
        ("[columns]\nc = 5\n", "columns.c: must be a table of keys"),
    ],
)
def test_a_broken_column_is_one_line_naming_file_column_and_key(
    tmp_path: Path, columns: str, where: str
) -> None:
    """Refused when the file is read (formerly: a KeyError in every file's transform, or an
    error message broken over lines by a name)."""
    path = tmp_path / "x.toml"
    path.write_text(KEY.replace("[columns.id]", "[columns.id]") + columns)
    with pytest.raises(ConfigError) as err:
        parse_dataset(path)
    message = err.value.message
    assert message == f"dataset file {path}: {where}" or message.startswith(
        f"dataset file {path}: {where}"
    ), message
    assert len(message.splitlines()) == 1, message


def test_the_spec_error_names_file_column_and_key(tmp_path: Path) -> None:
    path = dataset(
        tmp_path, '[columns.amount]\ntype = "decimal"\nscale = 2\nderive = "id"\nmismatch = "nope"\n'
    )
    with pytest.raises(ConfigError) as err:
        parse_dataset(path)
    assert str(path) in err.value.message
    assert "columns.amount.mismatch: 'nope' is not a row reason code" in err.value.message


def test_the_mismatch_code_is_the_datasets_own(tmp_path: Path) -> None:
    cols = (
        '[columns.a]\ntype = "integer"\n[columns.b]\ntype = "decimal"\nscale = 2\n'
        'derive = "a * 2"\ntolerance = 0.01\n'
    )
    text = "id,a,b\nx,1,2.00\ny,1,3.00\n"
    assert [c for _, c, _ in rejects(tmp_path, cols, text)] == ["derived_mismatch"]
    assert [c for _, c, _ in rejects(tmp_path, cols + 'mismatch = "total_mismatch"\n', text)] == [
        "total_mismatch"
    ]


def test_a_pattern_is_worded_by_its_hint_or_shown(tmp_path: Path) -> None:
    # braces in a pattern (or a name) are text, never a format string
    cols = "[columns.code]\ntype = \"text\"\npattern = '^[0-9]{3}$'\n"
    text = "id,code\nx,12\n"
    assert rejects(tmp_path, cols, text) == [(2, "bad_format", "code '12' does not match ^[0-9]{3}$")]
    hinted = cols + 'pattern_hint = "must be three digits"\n'
    assert rejects(tmp_path, hinted, text) == [(2, "bad_format", "code '12' must be three digits")]
    hidden = hinted.replace("[columns.code]\n", "[columns.code]\nsensitive = true\n")
    assert rejects(tmp_path, hidden, text) == [(2, "bad_format", "code must be three digits")]


def test_the_first_rule_in_table_order_wins(tmp_path: Path) -> None:
    cols = '[columns.n]\ntype = "decimal"\nscale = 1\nmin = 0\nmax = 5\n'
    found = rejects(tmp_path, cols, "id,n\nx,9.25\ny,-1\nz,6\n")
    assert found == [
        (2, "too_many_decimals", "n '9.25' has more than 1 decimal places"),
        (3, "out_of_range", "n '-1' is below 0"),
        (4, "out_of_range", "n '6' is above 5"),
    ]


def test_a_value_check_is_a_pure_function_of_its_values() -> None:
    text = pa.array(["ab", "abcd", ""])
    present = np.array([True, True, False])
    finding = BY_KEY["max_length"].data(None, 3, Values(text, present, present))  # type: ignore[misc,arg-type]
    assert finding.mask.tolist() == [False, True, False] and not finding.show_value


def test_row_reject_holds_every_shape_rule_in_order() -> None:
    """The one rule set of both parse paths: a bare CR first, then bad quoting, then the
    field count, NUL and encoding."""
    assert row_reject(7, b'a,"b"c', 2, 2, False, bad_quoting=True).code == "bad_quoting"  # type: ignore[union-attr]
    assert row_reject(7, b"a\rb,c", 2, 2, True, bad_quoting=True).code == "bare_cr"  # type: ignore[union-attr]
    assert row_reject(7, b"a", 1, 2, False).code == "field_count"  # type: ignore[union-attr]
    assert row_reject(7, b"a,\x00", 2, 2, False).code == "nul_byte"  # type: ignore[union-attr]
    assert row_reject(7, b"a,\xe9", 2, 2, False).code == "not_utf8"  # type: ignore[union-attr]
    assert row_reject(7, b"a,b", 2, 2, False) is None
