"""The column rule table (sales_etl/rules.py): it alone decides what a dataset file may say
and which value checks run, in which order, with which reason code."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from sales_etl.datasets import parse_dataset
from sales_etl.errors import ConfigError
from sales_etl.extract import iter_chunks
from sales_etl.reasons import codes
from sales_etl.records import row_reject
from sales_etl.rules import BY_KEY, RULES, Values, spec_problems, value_checks
from sales_etl.transform import transform

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


@pytest.mark.parametrize(("raw", "key", "words"), [
    ({"type": "text", "colour": 1}, "", "unknown key(s) colour"),
    ({"type": "blob"}, "type", "must be one of"),
    ({}, "type", "None must be one of"),
    ({"type": "text", "max_length": "5"}, "max_length", "wrong type"),
    ({"type": "enum"}, "values", "an enum needs a list of allowed strings"),
    ({"type": "enum", "values": [1]}, "values", "an enum needs a list of allowed strings"),
    ({"type": "decimal"}, "scale", "a decimal needs its number of decimal places"),
    ({"type": "decimal", "scale": -1}, "scale", "must not be negative"),
    ({"type": "integer", "sensitive": True}, "sensitive", "only text columns"),
    ({"type": "text", "split": ["a", "b"]}, "split", "only a timestamp splits"),
    ({"type": "timestamp", "split": ["a", "B"]}, "split", "not a valid SQL identifier"),
    ({"type": "text", "pattern": "("}, "pattern", "not a regular expression"),
    ({"type": "text", "pattern_hint": "x"}, "pattern_hint", "only with pattern"),
    ({"type": "decimal", "scale": 2, "mismatch": "total_mismatch"}, "mismatch",
     "only with derive"),
    ({"type": "decimal", "scale": 2, "derive": "a", "mismatch": "totl_mismatch"}, "mismatch",
     "not a row reason code"),
    ({"type": "text", "normalize": "title"}, "normalize", "must be one of"),
])
def test_spec_problems_name_the_key(raw: dict[str, object], key: str, words: str) -> None:
    problems = spec_problems(raw)
    assert problems and problems[0][0] == key and words in problems[0][1], problems


def test_a_sound_column_has_no_problem() -> None:
    assert spec_problems({"type": "integer", "sensitive": False, "min": 1}) == []
    assert spec_problems({"type": "decimal", "scale": 2, "derive": "a * 2",
                          "tolerance": 0.01, "mismatch": "derived_mismatch"}) == []


def test_the_spec_error_names_file_column_and_key(tmp_path: Path) -> None:
    path = dataset(tmp_path, '[columns.amount]\ntype = "decimal"\nscale = 2\n'
                             'derive = "id"\nmismatch = "nope"\n')
    with pytest.raises(ConfigError) as err:
        parse_dataset(path)
    assert str(path) in err.value.message
    assert "columns.amount.mismatch: 'nope' is not a row reason code" in err.value.message


def test_the_mismatch_code_is_the_datasets_own(tmp_path: Path) -> None:
    cols = ('[columns.a]\ntype = "integer"\n[columns.b]\ntype = "decimal"\nscale = 2\n'
            'derive = "a * 2"\ntolerance = 0.01\n')
    text = "id,a,b\nx,1,2.00\ny,1,3.00\n"
    assert [c for _, c, _ in rejects(tmp_path, cols, text)] == ["derived_mismatch"]
    assert [c for _, c, _ in rejects(tmp_path, cols + 'mismatch = "total_mismatch"\n', text)] == [
        "total_mismatch"]


def test_a_pattern_is_worded_by_its_hint_or_shown(tmp_path: Path) -> None:
    # braces in a pattern (or a name) are text, never a format string
    cols = '[columns.code]\ntype = "text"\npattern = \'^[0-9]{3}$\'\n'
    text = "id,code\nx,12\n"
    assert rejects(tmp_path, cols, text) == [(2, "bad_format", "code '12' does not match ^[0-9]{3}$")]
    hinted = cols + 'pattern_hint = "must be three digits"\n'
    assert rejects(tmp_path, hinted, text) == [(2, "bad_format", "code '12' must be three digits")]
    hidden = hinted.replace("[columns.code]\n", "[columns.code]\nsensitive = true\n")
    assert rejects(tmp_path, hidden, text) == [(2, "bad_format", "code must be three digits")]


def test_the_first_rule_in_table_order_wins(tmp_path: Path) -> None:
    cols = '[columns.n]\ntype = "decimal"\nscale = 1\nmin = 0\nmax = 5\n'
    found = rejects(tmp_path, cols, "id,n\nx,9.25\ny,-1\nz,6\n")
    assert found == [(2, "too_many_decimals", "n '9.25' has more than 1 decimal places"),
                     (3, "out_of_range", "n '-1' is below 0"),
                     (4, "out_of_range", "n '6' is above 5")]


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
