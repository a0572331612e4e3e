import numpy as np
import pyarrow as pa

from sales_etl.datasets.reader import get_dataset
from sales_etl.db.copytext import copy_text

SALES = get_dataset("sales")


def frame(**overrides: object) -> dict[str, pa.Array]:
    row: dict[str, object] = {c: "x" for c in SALES.sql_columns}
    row.update({"customer_id_hash": "ab", "product_id_hash": "cd", "store_id_hash": "ef"})
    row.update(overrides)
    return {k: pa.array([v], pa.string()) for k, v in row.items()}


def test_copy_text_escapes_and_nulls() -> None:
    text = (
        copy_text(frame(transaction_id="a\tb\\c\nd", discount=None), np.array([7]), SALES, run_id=42)
        .to_pybytes()
        .decode()
    )
    fields = text.rstrip("\n").split("\t")
    assert fields[0] == "a\\tb\\\\c\\nd"
    assert fields[SALES.sql_columns.index("discount")] == "\\N"
    assert fields[SALES.sql_columns.index("customer_id_hash")] == "\\\\xab"
    assert fields[-2:] == ["42", "7"] and text.count("\n") == 1  # run and source line


def test_empty_frame_is_empty_payload() -> None:
    empty = {k: v.slice(0, 0) for k, v in frame().items()}
    assert copy_text(empty, np.array([], dtype=np.int64), SALES, 1).size == 0
