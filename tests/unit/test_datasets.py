import re
import tomllib
from pathlib import Path

import pytest

from sales_etl.core.errors import ConfigError
from sales_etl.datasets.reader import get_dataset, load_datasets, parse_dataset


def test_sales_spec() -> None:
    ds = get_dataset("sales")
    assert ds.business_key == ("transaction_id",)
    assert [c.name for c in ds.sensitive] == ["customer_id", "product_id", "store_id"]
    assert ds.sql_columns[-3:] == ("customer_id_hash", "product_id_hash", "store_id_hash")
    assert "sale_date" in ds.sql_columns and "timestamp" not in ds.sql_columns


def test_unknown_dataset() -> None:
    with pytest.raises(ConfigError, match="unknown dataset 'nope'"):
        get_dataset("nope")


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            'name = "x"\ntable = "x; drop table sales"\n'
            'business_key=["a"]\n[columns.a]\ntype="text"\nrequired=true',
            "table",
        ),
        ('name = "x"\nbusiness_key=["a"]\n[columns.a]\ntype="blob"\nrequired=true', "columns.a.type"),
        ('name = "x"\nbusiness_key=["b"]\n[columns.a]\ntype="text"\nrequired=true', "business_key"),
        ('name = "x"\nbusiness_key=["a"]\n[columns.a]\ntype="text"\nrequired=true\ncolour=1', "colour"),
        (
            'name = "x"\nbusiness_key=["a"]\n[columns.a]\ntype="text"\nrequired=true\n'
            '[columns.b]\ntype="decimal"\nscale=2\nderive="__import__(1)"',
            "derive",
        ),
        ('name = "x"\nbusiness_key=["a"\n', "not valid TOML"),
        # values of a shape no check foresaw: still a ConfigError naming the file (a TypeError
        # would escape scan_datasets and fail every dataset's start-up report and sweep)
        (
            'name = "x"\nbusiness_key=["a"]\n[columns.a]\ntype="text"\nrequired=true\npattern=5',
            "columns.a.pattern",
        ),
        (
            'name = "x"\nbusiness_key=["a"]\n[columns.a]\ntype="text"\nrequired=true\nvalues=5',
            "columns.a.values",
        ),
        ('name = "x"\nbusiness_key=["a"]\n[columns]\na=5', "columns.a: must be a table of keys"),
        (
            'name = "x"\nversion = true\nbusiness_key=["a"]\n[columns.a]\ntype="text"\nrequired=true',
            "version: True must be a positive whole number",
        ),
    ],
)
def test_malformed_spec_names_file_and_key(tmp_path: Path, body: str, words: str) -> None:
    path = tmp_path / "x.toml"
    path.write_text(body)
    with pytest.raises(ConfigError) as err:
        parse_dataset(path)
    assert str(path) in err.value.message and words in err.value.message


def test_extra_directory_adds_datasets(tmp_path: Path) -> None:
    (tmp_path / "things.toml").write_text(
        'name = "things"\nbusiness_key=["id"]\n[columns.id]\ntype="text"\nrequired=true\n'
    )
    found = load_datasets(tmp_path)
    assert set(found) >= {"sales", "things"}


def test_derived_expressions_are_arithmetic_only() -> None:
    import numpy as np

    from sales_etl.stages.expr import evaluate

    cols = {"a": np.array([2.0, 3.0]), "b": np.array([0.5, 1.0])}
    assert evaluate("a * (1 - b) + -a / 2", cols).tolist() == [0.0, -1.5]
    for bad in ("a.__class__", "__import__('os')", "a ** 2", "c + 1", "a if b else a"):
        with pytest.raises(ValueError):
            evaluate(bad, cols)


def test_the_worker_does_not_import_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys, function_app, sales_etl.flow.pipeline, sales_etl.flow.retry;"
        "print('pandas' in sys.modules)"
    )
    from sales_etl.config.settings import project_root

    out = subprocess.run(
        [sys.executable, "-c", code], cwd=project_root(), capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "False"  # pandas costs ~40 MB of RSS and cold-start time in every worker


# ------------------------------------------------------------ docs/datasets.md against the code

DATASETS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "datasets.md"
_TOML_KINDS = {
    (str,): "string",
    (bool,): "boolean",
    (int,): "integer",
    (list,): "array",
    (int, float): "number",
}


def key_rows(page: str) -> dict[str, str]:
    """The rows of the page's "Column keys" table by key (a row may name two, ``min`` /
    ``max``)."""
    start = page.index("\n## Column keys\n")
    end = page.find("\n## ", start + 1)
    rows = {}
    for line in page[start : end if end != -1 else len(page)].splitlines():
        if line.startswith("| `"):
            for key in re.findall(r"`([^`]+)`", line.split("|")[1]):
                assert key not in rows, f"{key} twice in the table"
                rows[key] = line
    return rows


def key_problems(page: str) -> list[str]:
    """What the "Column keys" table does not say as ``RULES`` does: a key of the rules the
    table has no row for, a row for a key that is not a rule, a TOML type other than the
    rule's, a value check's reason code the row does not name."""
    from sales_etl.stages.rules import RULES

    rows = key_rows(page)
    out = [f"{key}: a row, but no such key in RULES" for key in rows if key not in {r.key for r in RULES}]
    for rule in RULES:
        row = rows.get(rule.key)
        if row is None:
            out.append(f"{rule.key}: in RULES, not in the table")
            continue
        takes = row.split("|")[2].strip()
        if takes != _TOML_KINDS.get(rule.kind, repr(rule.kind)):
            out.append(f"{rule.key}: takes {_TOML_KINDS.get(rule.kind, rule.kind)}, the table says {takes}")
        if rule.code is not None and f"`{rule.code}`" not in row:
            out.append(f"{rule.key}: rejects as {rule.code}, its row does not say so")
    return out


def test_the_datasets_page_lists_exactly_the_column_keys() -> None:
    assert key_problems(DATASETS_PAGE.read_text()) == []


def test_the_key_table_is_read() -> None:
    """(The comparison cannot pass by reading nothing; a planted defect of each kind fails.)"""
    page = DATASETS_PAGE.read_text()
    assert {"type", "required", "min", "max", "pattern_hint"} <= set(key_rows(page))
    planted = (
        re.sub(r"^\| `pattern_hint` .*\n", "", page, flags=re.M)
        .replace("| `scale` | integer |", "| `scale` | string |")
        .replace("characters (`too_long`)", "characters")
        .replace("| `default` |", "| `fallback` | string | gone |\n| `default` |")
    )
    assert sorted(key_problems(planted)) == [
        "fallback: a row, but no such key in RULES",
        "max_length: rejects as too_long, its row does not say so",
        "pattern_hint: in RULES, not in the table",
        "scale: takes integer, the table says string",
    ]


def test_the_annotated_dataset_file_is_a_dataset_file(tmp_path: Path) -> None:
    """The page's annotated ``toml`` block, as it is, is read by the dataset reader: every
    key it shows exists, on a column type that takes it."""
    page = DATASETS_PAGE.read_text()
    [block] = re.findall(r"^```toml\n(.*?)^```", page, flags=re.M | re.S)
    path = tmp_path / f"{tomllib.loads(block)['name']}.toml"
    path.write_text(block)
    dataset = parse_dataset(path)
    assert {c.name for c in dataset.columns} >= {"customer_id", "email", "join_date"}


def test_the_datasets_page_names_the_shipped_datasets() -> None:
    """The list of shipped datasets at the top of the page is the folder's."""
    from sales_etl.datasets.reader import SHIPPED_DIR

    first = DATASETS_PAGE.read_text().split("\n\n")[1]
    listed = re.search(r"`sales_etl/datasets/` \(([^)]*?):", first)
    assert listed, first
    assert sorted(re.findall(r"`(\w+)`", listed.group(1))) == sorted(
        p.stem for p in SHIPPED_DIR.glob("*.toml")
    )
