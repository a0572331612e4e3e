"""Build chunks from CSV text, the way the pipeline does, for the pure-stage tests."""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa

from sales_etl.datasets.reader import get_dataset
from sales_etl.stages.extract import iter_chunks
from sales_etl.stages.records import Chunk, Header
from sales_etl.stages.transform import Transformed, transform

SALES = get_dataset("sales")
HEADER = (
    "transaction_id,customer_id,product_id,store_id,quantity,unit_price,discount,"
    "total_amount,payment_method,timestamp"
)
GOOD = "TX-1,CUST-001,PROD-001,STORE-001,2,10.00,0.10,18.00,Credit Card ,2025-10-09 08:00:00"


def parse(
    text: str | bytes, name: str = "test.csv", chunk_rows: int = 1000, block_bytes: int = 1 << 20
) -> tuple[Header, list[Chunk]]:
    data = text.encode("utf-8") if isinstance(text, str) else text
    header, chunks = iter_chunks(io.BytesIO(data), SALES, name, chunk_rows, block_bytes=block_bytes)
    return header, list(chunks)


def run(text: str | bytes, chunk_rows: int = 1000, block_bytes: int = 1 << 20) -> Transformed:
    header, chunks = parse(text, chunk_rows=chunk_rows, block_bytes=block_bytes)
    results = [transform(c, header, SALES) for c in chunks]
    if not results:
        return Transformed({}, np.empty(0, dtype=np.int64), [])
    return Transformed(
        columns={k: pa.concat_arrays([r.columns[k] for r in results]) for k in results[0].columns},
        lines=np.concatenate([r.lines for r in results]),
        rejects=[rej for r in results for rej in r.rejects],
    )


def csv_of(*rows: str) -> str:
    return "\n".join((HEADER, *rows)) + "\n"
