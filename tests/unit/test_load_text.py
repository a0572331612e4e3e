import numpy as np
import pandas as pd

from sales_etl.datasets import get_dataset
from sales_etl.load import copy_text

SALES = get_dataset("sales")


def frame(**overrides: object) -> pd.DataFrame:
    row = {c: "x" for c in SALES.sql_columns}
    row.update({"customer_id_hash": "ab", "product_id_hash": "cd", "store_id_hash": "ef"})
    row.update(overrides)
    return pd.DataFrame([row])


def test_copy_text_escapes_and_nulls() -> None:
    text = copy_text(frame(transaction_id="a\tb\\c\nd", discount=None),
                     np.array([7]), SALES).decode()
    fields = text.rstrip("\n").split("\t")
    assert fields[0] == "a\\tb\\\\c\\nd"
    assert fields[SALES.sql_columns.index("discount")] == "\\N"
    assert fields[SALES.sql_columns.index("customer_id_hash")] == "\\\\xab"
    assert fields[-1] == "7" and text.count("\n") == 1


def test_empty_frame_is_empty_payload() -> None:
    assert copy_text(frame().iloc[0:0], np.array([], dtype=np.int64), SALES) == b""
