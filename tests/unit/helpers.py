"""Build chunks from CSV text, the way the pipeline does, for the pure-stage tests."""

from __future__ import annotations

import io

from sales_etl.datasets import get_dataset
from sales_etl.extract import Chunk, Header, iter_chunks, open_text
from sales_etl.transform import Transformed, transform

SALES = get_dataset("sales")
HEADER = ("transaction_id,customer_id,product_id,store_id,quantity,unit_price,discount,"
          "total_amount,payment_method,timestamp")
GOOD = "TX-1,CUST-001,PROD-001,STORE-001,2,10.00,0.10,18.00,Credit Card ,2025-10-09 08:00:00"


def parse(text: str | bytes, name: str = "test.csv", chunk_rows: int = 1000,
          ) -> tuple[Header, list[Chunk]]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    header, chunks = iter_chunks(open_text(io.BytesIO(data), name), SALES, name, chunk_rows)
    return header, list(chunks)


def run(text: str, chunk_rows: int = 1000) -> Transformed:
    header, chunks = parse(text, chunk_rows=chunk_rows)
    results = [transform(c, header, SALES) for c in chunks]
    import numpy as np
    import pandas as pd

    if not results:
        return Transformed(pd.DataFrame(), np.empty(0, dtype=np.int64), [])
    return Transformed(
        frame=pd.concat([r.frame for r in results], ignore_index=True),
        lines=np.concatenate([r.lines for r in results]),
        rejects=[rej for r in results for rej in r.rejects])


def csv_of(*rows: str) -> str:
    return "\n".join((HEADER, *rows)) + "\n"
