"""``sales-etl datasets check``: does the database hold what each dataset file describes?

Reflects the tables with SQLAlchemy and checks, for every dataset: the table exists; each
column the loader writes exists with a compatible type (tokens need room: text, or a
varchar of at least 200); the business key has a unique index or constraint (the merge's
ON CONFLICT needs one); the surrogate key used by key rotation exists.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy
from sqlalchemy import types
from sqlalchemy.pool import NullPool

from sales_etl.config.settings import DatabaseSettings
from sales_etl.db.copytext import load_columns
from sales_etl.stages.spec import Dataset

TOKEN_MIN_LENGTH = 200


def engine_for(db: DatabaseSettings) -> sqlalchemy.Engine:
    query: dict[str, str] = {}
    if not db.host.startswith("/"):
        query["sslmode"] = db.sslmode
        if db.sslrootcert:
            query["sslrootcert"] = db.sslrootcert
    url = sqlalchemy.URL.create(
        "postgresql+psycopg2",
        username=db.user,
        password=db.password.get() if db.password else None,
        host=db.host,
        port=db.port,
        database=db.dbname,
        query=query,
    )
    return sqlalchemy.create_engine(url, poolclass=NullPool)


def _expected(dataset: Dataset) -> dict[str, tuple[type[Any], ...]]:
    text = (types.String,)
    kinds: dict[str, tuple[type[Any], ...]] = {}
    for col in dataset.columns:
        if col.type in ("text", "enum"):
            kinds[col.sql[0]] = text
        elif col.type == "integer":
            kinds[col.sql[0]] = (types.Integer,)
        elif col.type == "decimal":
            kinds[col.sql[0]] = (types.Numeric,)
        elif col.type == "date":
            kinds[col.sql[0]] = (types.Date,)
        elif len(col.sql) == 2:
            kinds[col.sql[0]], kinds[col.sql[1]] = (types.Date,), (types.Time,)
        else:
            kinds[col.sql[0]] = (types.DateTime,)
    for col in dataset.sensitive:
        kinds[col.hash_column] = (types.LargeBinary,)
    kinds["etl_run_id"] = kinds["source_line"] = (types.Integer,)
    return kinds


def check(db: DatabaseSettings, datasets: list[Dataset]) -> dict[str, list[str]]:
    """{dataset: problems}; an empty list means the dataset fits its table."""
    engine = engine_for(db)
    try:
        inspector = sqlalchemy.inspect(engine)
        return {ds.name: _check_one(inspector, ds) for ds in datasets}
    finally:
        engine.dispose()


def _check_one(inspector: Any, ds: Dataset) -> list[str]:
    if not inspector.has_table(ds.table):
        return [f"table {ds.table!r} does not exist (a migration should create it)"]
    columns = {c["name"]: c["type"] for c in inspector.get_columns(ds.table)}
    problems = []
    expected = _expected(ds)
    for name in load_columns(ds):
        if name not in columns:
            problems.append(f"column {ds.table}.{name} is missing")
            continue
        if not isinstance(columns[name], expected[name]):
            problems.append(
                f"column {ds.table}.{name} is {columns[name]}, expected "
                + " or ".join(t.__name__ for t in expected[name])
            )
    for col in ds.sensitive:
        kind = columns.get(col.sql[0])
        length = getattr(kind, "length", None)
        if length is not None and length < TOKEN_MIN_LENGTH:
            problems.append(
                f"column {ds.table}.{col.sql[0]} holds Fernet tokens: varchar({length})"
                f" is too short (use text, or at least {TOKEN_MIN_LENGTH})"
            )
    if ds.row_id not in columns:
        problems.append(f"row_id column {ds.table}.{ds.row_id} is missing")
    key = set(ds.key_sql)
    unique = [set(c["column_names"]) for c in inspector.get_unique_constraints(ds.table)]
    unique += [set(i["column_names"]) for i in inspector.get_indexes(ds.table) if i["unique"]]
    pk = inspector.get_pk_constraint(ds.table)
    unique.append(set(pk.get("constrained_columns") or []))
    if key not in unique:
        problems.append(f"no unique index on the business key ({', '.join(ds.key_sql)})")
    return problems
