"""The whole example model as configuration: five datasets loaded from consistent files,
joins on blind indexes checked against the plaintext, dimension updates, a sixth dataset
with no code, key rotation."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from azure.storage.blob import ContainerClient
from cryptography.fernet import Fernet

from sales_etl.app import triggers
from sales_etl.config.settings import Secret, Settings
from sales_etl.datasets.reader import load_datasets
from sales_etl.db import migrate, rotate
from sales_etl.db.dbcheck import check
from sales_etl.stages.protect import Protector
from sales_etl.storage import container as storage
from sales_etl_dev import hostcall
from sales_etl_dev.generate import generate_model

from .conftest import names, query

MODEL = ("suppliers", "products", "customers", "stores", "sales")


@pytest.fixture
def model(settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path) -> dict[str, Path]:
    query(settings, "TRUNCATE suppliers, products, customers, stores RESTART IDENTITY")
    paths = generate_model(
        tmp_path / "model", sales_rows=3000, customers=40, products=25, stores=6, suppliers=5, seed=71
    )
    for dataset in reversed(MODEL):  # any order: no foreign keys between files
        blob = storage.upload(cc, paths[dataset], dataset=dataset)
        hostcall.invoke_blob_trigger(settings.container, blob)
    return paths


def totals_by(settings: Settings, dimension: str, key: str) -> dict[str, float]:
    protector = Protector(*settings.require_keys())
    rows = query(
        settings,
        f"SELECT d.{key}, sum(s.total_amount) FROM sales s JOIN {dimension} d"
        f" ON s.{key}_hash = d.{key}_hash GROUP BY d.{key}",
    )
    return {protector.decrypt(token): round(float(total), 2) for token, total in rows}


def plain_totals(path: Path, key: str) -> dict[str, float]:
    frame = pd.read_csv(path, dtype=str)
    totals = frame.assign(t=frame["total_amount"].astype(float)).groupby(key)["t"].sum()
    return {k: round(v, 2) for k, v in totals.items()}


def test_five_datasets_load_and_join_on_blind_indexes(
    settings: Settings, model: dict[str, Path], cc: ContainerClient
) -> None:
    counts = {d: query(settings, f"SELECT count(*) FROM {d}")[0][0] for d in MODEL}
    assert counts == {"suppliers": 5, "products": 25, "customers": 40, "stores": 6, "sales": 3000}
    assert names(cc, "failed/") == []
    assert totals_by(settings, "customers", "customer_id") == plain_totals(model["sales"], "customer_id")
    assert totals_by(settings, "stores", "store_id") == plain_totals(model["sales"], "store_id")
    [(joined,)] = query(
        settings,
        "SELECT count(*) FROM products p JOIN suppliers s ON p.supplier_id_hash = s.supplier_id_hash",
    )
    assert joined == 25
    [(plain,)] = query(settings, "SELECT count(*) FROM customers WHERE customer_id LIKE 'CUST%%'")
    assert plain == 0


def test_dimension_rows_are_upserted(
    settings: Settings, model: dict[str, Path], cc: ContainerClient, tmp_path: Path
) -> None:
    frame = pd.read_csv(model["customers"], dtype=str, keep_default_na=False)
    frame.loc[frame["customer_id"] == "CUST-001", "city"] = "Porto"
    moved = tmp_path / "customers_v2.csv"
    frame.to_csv(moved, index=False, lineterminator="\n")
    hostcall.invoke_blob_trigger(settings.container, storage.upload(cc, moved, dataset="customers"))
    [run] = query(
        settings,
        "SELECT rows_read, rows_loaded, rows_duplicate FROM etl_runs WHERE blob_path LIKE %s",
        ("%customers_v2.csv",),
    )
    assert run == (40, 1, 39)  # one customer changed, the others were already there
    protector = Protector(*settings.require_keys())
    cities = {protector.decrypt(t): c for t, c in query(settings, "SELECT customer_id, city FROM customers")}
    assert cities["CUST-001"] == "Porto" and len(cities) == 40


def test_fernet_rotation_is_resumable_and_keeps_joins(settings: Settings, model: dict[str, Path]) -> None:
    old_key = settings.fernet_keys[0]
    new_key = Fernet.generate_key().decode()
    both = replace(settings, fernet_keys=(Secret(new_key), old_key))
    before = totals_by(settings, "customers", "customer_id")

    class Stop(Exception):
        pass

    def interrupt(progress: rotate.Rotation) -> None:
        if progress.dataset == "sales" and progress.batches == 3:
            raise Stop

    datasets = list(load_datasets().values())
    with pytest.raises(Stop):
        rotate.rotate(both, datasets, batch=200, progress=interrupt)
    report = rotate.rotate(both, datasets, batch=200)
    resumed = {r.dataset: r.resumed_from for r in report.datasets}
    assert resumed["sales"] > 0  # continued where it stopped
    only_new = replace(settings, fernet_keys=(Secret(new_key),))
    protector = Protector(*only_new.require_keys())
    for table, column in (
        ("sales", "customer_id"),
        ("customers", "customer_id"),
        ("products", "supplier_id"),
        ("suppliers", "supplier_id"),
    ):
        for (token,) in query(settings, f"SELECT {column} FROM {table}"):
            protector.decrypt(token)  # every value decrypts with the new key alone
    assert totals_by(only_new, "customers", "customer_id") == before
    again = rotate.rotate(both, datasets, batch=200)
    assert again.rotated == 0  # nothing left to do


def test_blind_index_rotation_keeps_joins(settings: Settings, model: dict[str, Path]) -> None:
    before = totals_by(settings, "stores", "store_id")
    new_blind = base64.urlsafe_b64encode(os.urandom(32))
    rotate.rotate(
        settings,
        list(load_datasets().values()),
        batch=500,
        blind_index_key=base64.urlsafe_b64decode(new_blind),
    )
    rotated = replace(settings, blind_index_key=Secret(new_blind.decode()))
    assert totals_by(rotated, "stores", "store_id") == before
    protector = Protector(*rotated.require_keys())
    [(found,)] = query(
        settings, "SELECT count(*) FROM stores WHERE store_id_hash = %s", (protector.hash("STORE-001"),)
    )
    assert found == 1


@pytest.fixture
def sixth(settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    specs, migrations = tmp_path / "datasets", tmp_path / "migrations"
    specs.mkdir()
    migrations.mkdir()
    (specs / "returns.toml").write_text(
        'name = "returns"\ntable = "returns"\nbusiness_key = ["return_id"]\n'
        '[columns.return_id]\ntype = "text"\nrequired = true\nmax_length = 50\n'
        '[columns.transaction_id]\ntype = "text"\nrequired = true\nmax_length = 100\n'
        '[columns.amount]\ntype = "decimal"\nscale = 2\nrequired = true\nmin = 0\n'
        '[columns.returned_on]\ntype = "date"\nrequired = true\n'
    )
    (migrations / "V100__returns.sql").write_text(
        "CREATE TABLE IF NOT EXISTS returns (id bigserial PRIMARY KEY, return_id varchar(50)"
        " NOT NULL UNIQUE, transaction_id varchar(100) NOT NULL, amount numeric(10,2) NOT NULL,"
        " returned_on date NOT NULL, etl_run_id bigint NOT NULL, source_line integer NOT NULL);"
        " GRANT SELECT, INSERT ON returns TO sales_loader;"
        " GRANT USAGE ON SEQUENCE returns_id_seq TO sales_loader;"
    )
    migrate.migrate(settings.require_admin_database(), migrations)
    monkeypatch.setenv("DATASETS_DIR", str(specs))
    triggers.settings.cache_clear()  # the worker reads its settings once
    yield specs
    triggers.settings.cache_clear()
    query(settings, "DROP TABLE returns; DELETE FROM schema_migrations WHERE version = 100")


def test_a_sixth_dataset_needs_no_code(
    settings: Settings, clean: None, cc: ContainerClient, sixth: Path, tmp_path: Path
) -> None:
    data = tmp_path / "returns-1.csv"
    data.write_text(
        "return_id,transaction_id,amount,returned_on\n"
        "RET-1,TX-1,10.50,2025-10-10\nRET-2,TX-2,-1,2025-10-10\n"
        "RET-3,TX-3,3.00,2025-02-30\nRET-4,TX-4,4.00,2025-10-11\n"
    )
    blob = storage.upload(cc, data, dataset="returns")
    hostcall.invoke_blob_trigger(settings.container, blob)
    assert query(settings, "SELECT return_id, amount::text FROM returns ORDER BY 1") == [
        ("RET-1", "10.50"),
        ("RET-4", "4.00"),
    ]
    [(run_uuid,)] = query(settings, "SELECT run_uuid::text FROM etl_runs")
    assert names(cc, "rejected/") == [f"rejected/returns/returns-1.csv.{run_uuid}.rejects.csv"]
    with_sixth = replace(settings, datasets_dir=sixth)
    results = check(with_sixth.require_database(), list(load_datasets(with_sixth.datasets_dir).values()))
    assert results == {name: [] for name in (*MODEL, "returns")}


def test_datasets_check_names_what_is_wrong(settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        'name = "broken"\ntable = "sales"\nbusiness_key = ["transaction_id"]\n'
        '[columns.transaction_id]\ntype = "text"\nrequired = true\n'
        '[columns.colour]\ntype = "text"\n[columns.customer_id]\ntype = "integer"\n'
    )
    broken = load_datasets(tmp_path)["broken"]
    problems = check(settings.require_database(), [broken])["broken"]
    assert "column sales.colour is missing" in problems
    assert any(p.startswith("column sales.customer_id is TEXT") for p in problems)
