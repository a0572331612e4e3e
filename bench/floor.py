"""The floor: the exact rows the pipeline stores (shaped, encrypted, hashed), prepared
ahead as a COPY payload, then COPied into the same table with the same indexes."""

from __future__ import annotations

from pathlib import Path

from psycopg2 import sql

from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import get_dataset
from sales_etl.db.connection import connect
from sales_etl.db.copytext import copy_text, load_columns
from sales_etl.stages.extract import iter_chunks
from sales_etl.stages.protect import Protector
from sales_etl.stages.spec import Dataset
from sales_etl.stages.transform import transform


def prepare_payload(settings: Settings, csv_path: Path, out: Path) -> int:
    """Run the pure stages over the file and write what the pipeline would COPY."""
    dataset: Dataset = get_dataset("sales")
    fernet_keys, blind_key = settings.require_keys()
    protector = Protector(fernet_keys, blind_key)
    rows = 0
    with csv_path.open("rb") as raw, out.open("wb") as sink:
        header, chunks = iter_chunks(raw, dataset, str(csv_path), settings.chunk_rows)
        for chunk in chunks:
            result = transform(chunk, header, dataset)
            columns = protector.protect(result.columns, dataset)
            sink.write(copy_text(columns, result.lines, dataset, 1).to_pybytes())
            rows += len(result)
    return rows


def copy_payload(settings: Settings, payload: Path) -> int:
    dataset = get_dataset("sales")
    conn = connect(settings.require_database())
    try:
        with conn.cursor() as cur, payload.open("rb") as data:
            cur.copy_expert(
                sql.SQL("COPY {} ({}) FROM STDIN")
                .format(
                    sql.Identifier(dataset.table),
                    sql.SQL(", ").join(map(sql.Identifier, load_columns(dataset))),
                )
                .as_string(cur),
                data,
                size=1 << 20,
            )
            rows = int(cur.rowcount)
        conn.commit()
        return rows
    finally:
        conn.close()
