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
