"""The original design's load path, rebuilt for the benchmark only (never used by the app).

As the original README and DATA-MODEL describe it: pandas chunks of 10,000 rows, strings
normalised, sensitive columns encrypted one value at a time with Fernet, derived columns,
then ``DataFrame.to_sql(method="multi")`` in small batches from a thread pool, a new
engine per chunk. Its known defects that would make the comparison unfair in its favour
(lost rows at download-chunk boundaries) do not apply here: it reads a local file.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pandas as pd
import sqlalchemy
from cryptography.fernet import Fernet

CHUNK_ROWS = 10_000
BATCH_SIZE = 1_000
SENSITIVE = ("customer_id", "product_id", "store_id")


def _transform(chunk: pd.DataFrame, fernet: Fernet, blind: Any) -> pd.DataFrame:
    df = chunk.copy()
    for col in ("transaction_id", "customer_id", "product_id", "store_id", "payment_method"):
        df[col] = df[col].astype(str).str.strip()
    df["payment_method"] = df["payment_method"].str.lower()
    df["discount"] = pd.to_numeric(df["discount"], errors="coerce").fillna(0)
    df["quantity"] = pd.to_numeric(df["quantity"], errors="coerce")
    df["unit_price"] = pd.to_numeric(df["unit_price"], errors="coerce")
    df = df[(df["quantity"] > 0) & (df["unit_price"] >= 0)]
    total = pd.to_numeric(df["total_amount"], errors="coerce")
    df["total_amount"] = total.fillna((df["quantity"] * df["unit_price"] * (1 - df["discount"])).round(2))
    stamp = pd.to_datetime(df["timestamp"], format="%Y-%m-%d %H:%M:%S", errors="coerce")
    df["sale_date"], df["sale_time"] = stamp.dt.date, stamp.dt.time
    for col in SENSITIVE:  # one Fernet call per value, as the original did
        df[f"{col}_hash"] = df[col].map(blind)
        df[col] = df[col].map(lambda v: fernet.encrypt(v.encode()).decode())
    df["etl_run_id"] = 0
    df["source_line"] = 0
    return df.drop(columns=["timestamp"])


def load(path: str, url: sqlalchemy.URL, fernet_key: bytes, blind: Any) -> int:
    fernet = Fernet(fernet_key)
    loaded = 0

    def insert(part: pd.DataFrame) -> int:
        engine = sqlalchemy.create_engine(url)  # a new engine per batch, as the original did
        try:
            part.to_sql(
                "sales", engine, if_exists="append", index=False, method="multi", chunksize=BATCH_SIZE
            )
        finally:
            engine.dispose()
        return len(part)

    with ThreadPoolExecutor(max_workers=4) as pool:
        for chunk in pd.read_csv(path, chunksize=CHUNK_ROWS, dtype=str, keep_default_na=False):
            df = _transform(chunk, fernet, blind)
            parts = [df.iloc[i : i + BATCH_SIZE] for i in range(0, len(df), BATCH_SIZE)]
            loaded += sum(pool.map(insert, parts))
    return loaded
