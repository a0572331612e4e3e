"""Mock sales files, as the original design's generator made them, and then some.

Deterministic for a given seed; vectorised (a million rows in a few seconds). ``bad_rows``
mixes in rows that break one rule each, and returns what it broke, so tests and the demo
know exactly which lines must be rejected and why.
"""

from __future__ import annotations

import csv
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from sales_etl.stages.transform import round_half_up

HEADER = (
    "transaction_id",
    "customer_id",
    "product_id",
    "store_id",
    "quantity",
    "unit_price",
    "discount",
    "total_amount",
    "payment_method",
    "timestamp",
)
PAYMENTS = ("credit card", "debit card", "paypal", "cash")
DISCOUNTS = ("0", "0.05", "0.10", "0.15", "")
DEFAULT_START = datetime(2025, 10, 9, 8, 0, 0)
DEFAULT_END = datetime(2025, 10, 12, 22, 0, 0)

# One broken rule per bad row: (reason code expected from the pipeline, column, value)
BAD_KINDS: tuple[tuple[str, str, str], ...] = (
    ("out_of_range", "quantity", "0"),
    ("out_of_range", "quantity", "-3"),
    ("bad_integer", "quantity", "2.5"),
    ("out_of_range", "unit_price", "-10.00"),
    ("too_many_decimals", "unit_price", "12.345"),
    ("bad_decimal", "unit_price", "1,200.00"),
    ("out_of_range", "discount", "1.5"),
    ("total_mismatch", "total_amount", "0.01"),
    ("bad_value", "payment_method", "bitcoin"),
    ("bad_timestamp", "timestamp", "2025-02-30 10:00:00"),
    ("bad_timestamp", "timestamp", "09/10/2025 10:00"),
    ("missing_value", "customer_id", ""),
    ("missing_value", "transaction_id", "   "),
    ("bad_format", "store_id", "=cmd|' /C calc'!A0"),
)


@dataclass
class Generated:
    path: Path
    rows: int
    bad: dict[int, str]  # line number -> expected reason code


def make_frame(
    rows: int,
    *,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
    customers: int = 5,
    products: int = 8,
    stores: int = 5,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    raw = rng.bytes(16 * rows)
    ids = [str(uuid.UUID(bytes=raw[i : i + 16], version=4)) for i in range(0, 16 * rows, 16)]
    quantity = rng.integers(1, 6, rows)
    price_cents = rng.integers(1500, 60001, rows)
    discount = np.asarray(DISCOUNTS, dtype=object)[rng.integers(0, len(DISCOUNTS), rows)]
    disc_value = pd.to_numeric(pd.Series(discount).replace("", "0")).to_numpy()
    total = round_half_up(quantity * (price_cents / 100) * (1 - disc_value), 2)
    span = int((end - start).total_seconds())
    seconds = np.sort(rng.integers(0, span + 1, rows))
    stamps = (pd.Timestamp(start) + pd.to_timedelta(seconds, unit="s")).strftime("%Y-%m-%d %H:%M:%S")
    return pd.DataFrame(
        {
            "transaction_id": ["TX-" + i for i in ids],
            "customer_id": [f"CUST-{n:03d}" for n in rng.integers(1, customers + 1, rows)],
            "product_id": [f"PROD-{n:03d}" for n in rng.integers(1, products + 1, rows)],
            "store_id": [f"STORE-{n:03d}" for n in rng.integers(1, stores + 1, rows)],
            "quantity": quantity.astype(str),
            "unit_price": np.char.mod("%.2f", price_cents / 100),
            "discount": discount,
            "total_amount": np.char.mod("%.2f", total),
            "payment_method": np.asarray(PAYMENTS, dtype=object)[rng.integers(0, 4, rows)],
            "timestamp": stamps,
        },
        columns=list(HEADER),
    )


def inject_bad_rows(frame: pd.DataFrame, count: int, *, seed: int = 0) -> dict[int, str]:
    """Break ``count`` rows (one rule each); return {line number: expected reason code}."""
    if count <= 0:
        return {}
    if count > len(frame):
        raise ValueError(f"cannot break {count} rows of a {len(frame)}-row file")
    rng = np.random.default_rng(seed + 1)
    positions = np.sort(rng.choice(len(frame), size=count, replace=False))
    bad: dict[int, str] = {}
    for n, pos in enumerate(positions):
        code, column, value = BAD_KINDS[n % len(BAD_KINDS)]
        frame.iat[int(pos), frame.columns.get_loc(column)] = value
        bad[int(pos) + 2] = code  # line 1 is the header
    return bad


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, quoting=csv.QUOTE_MINIMAL, lineterminator="\n")


def generate(
    path: Path,
    rows: int,
    *,
    bad_rows: int = 0,
    seed: int = 0,
    start: datetime = DEFAULT_START,
    end: datetime = DEFAULT_END,
    customers: int = 5,
    products: int = 8,
    stores: int = 5,
) -> Generated:
    if end < start:
        raise ValueError("--end must not be before --start")
    frame = make_frame(
        rows, seed=seed, start=start, end=end, customers=customers, products=products, stores=stores
    )
    bad = inject_bad_rows(frame, bad_rows, seed=seed)
    write_csv(frame, path)
    return Generated(path=path, rows=rows, bad=bad)


def default_name(now: datetime | None = None) -> str:
    return f"sales_{(now or datetime.now()):%Y%m%d%H%M%S}.csv"


# ----------------------------------------------------------------------------- the model

FIRST = ("Ana", "Luis", "Marta", "Jorge", "Lucia", "Pablo", "Elena", "Diego", "Sara", "Hugo")
LAST = ("Garcia", "Lopez", "Martin", "Sanchez", "Perez", "Gomez", "Ruiz", "Diaz", "Moreno")
PLACES = (
    ("Madrid", "Spain"),
    ("Lisbon", "Portugal"),
    ("Paris", "France"),
    ("Berlin", "Germany"),
    ("Rome", "Italy"),
)
CATEGORIES = ("books", "garden", "kitchen", "toys", "tools", "sports")


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}-{i:03d}" for i in range(1, n + 1)]


def generate_model(
    directory: Path,
    *,
    sales_rows: int = 1000,
    customers: int = 20,
    products: int = 15,
    stores: int = 5,
    suppliers: int = 4,
    seed: int = 0,
) -> dict[str, Path]:
    """Consistent files for the whole example model: every id a sale, product or
    customer refers to exists in its own file. Returns {dataset: path}."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    sup = _ids("SUP", suppliers)
    frames = {
        "suppliers": pd.DataFrame(
            {
                "supplier_id": sup,
                "name": [f"Supplier {i}" for i in range(1, suppliers + 1)],
                "country": [PLACES[i % len(PLACES)][1] for i in range(suppliers)],
                "contact_email": [f"orders{i}@supplier{i}.example" for i in range(1, suppliers + 1)],
            }
        ),
        "products": pd.DataFrame(
            {
                "product_id": _ids("PROD", products),
                "name": [f"Product {i}" for i in range(1, products + 1)],
                "category": [CATEGORIES[i % len(CATEGORIES)] for i in range(products)],
                "current_price": np.char.mod("%.2f", rng.integers(1500, 60001, products) / 100),
                "cost": np.char.mod("%.2f", rng.integers(500, 1500, products) / 100),
                "supplier_id": [sup[i % suppliers] for i in range(products)],
                "stock": rng.integers(0, 500, products).astype(str),
            }
        ),
        "customers": pd.DataFrame(
            {
                "customer_id": _ids("CUST", customers),
                "first_name": [FIRST[i % len(FIRST)] for i in range(customers)],
                "last_name": [LAST[i % len(LAST)] for i in range(customers)],
                "email": [f"customer{i}@mail.example" for i in range(1, customers + 1)],
                "phone": [f"+34 600 {i:06d}" for i in range(1, customers + 1)],
                "join_date": [f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}" for i in range(customers)],
                "country": [PLACES[i % len(PLACES)][1] for i in range(customers)],
                "city": [PLACES[i % len(PLACES)][0] for i in range(customers)],
            }
        ),
        "stores": pd.DataFrame(
            {
                "store_id": _ids("STORE", stores),
                "name": [f"Store {i}" for i in range(1, stores + 1)],
                "city": [PLACES[i % len(PLACES)][0] for i in range(stores)],
                "country": [PLACES[i % len(PLACES)][1] for i in range(stores)],
            }
        ),
        "sales": make_frame(sales_rows, seed=seed, customers=customers, products=products, stores=stores),
    }
    paths = {}
    for name, frame in frames.items():
        paths[name] = directory / f"{name}.csv"
        write_csv(frame, paths[name])
    return paths
