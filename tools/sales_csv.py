"""Hand-made sales CSV bodies for the tests and the benchmark (``bench.record_memory``).

``row(tx, **change)`` is one valid sales record (the documented example values) with the named
fields changed, written by Python's csv module: a field with a comma, a quote, a CR or an LF
is quoted, as a well-formed file would have it; the record carries no line end. ``body``
joins records under a header with the given line end and encodes them as UTF-8. For a
malformed record (a bare CR, a stray quote) edit the string ``row`` returns.
"""

from __future__ import annotations

import csv
import io

HEADER = (
    "transaction_id,customer_id,product_id,store_id,quantity,unit_price,discount,"
    "total_amount,payment_method,timestamp"
)


def row(tx: str, **change: str) -> str:
    fields = dict(
        transaction_id=tx,
        customer_id="CUST-001",
        product_id="PROD-001",
        store_id="STORE-001",
        quantity="2",
        unit_price="10.00",
        discount="0",
        total_amount="20.00",
        payment_method="cash",
        timestamp="2025-10-09 08:00:00",
    )
    fields.update(change)
    out = io.StringIO()
    csv.writer(out, lineterminator="\r\n").writerow(fields.values())  # quotes CR and LF
    return out.getvalue()[:-2]


def body(*lines: str, header: str = HEADER, end: str = "\n") -> bytes:
    return (end.join((header, *lines)) + end).encode()
