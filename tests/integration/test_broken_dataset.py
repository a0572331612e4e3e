"""A broken dataset file (DATASETS_DIR) fails only its own files, and the sweep neither
churns them nor stops judging the other datasets' failures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from azure.storage.blob import ContainerClient

from sales_etl import __version__
from sales_etl.config.settings import Settings
from sales_etl.datasets.reader import dataset_version, get_dataset
from sales_etl.flow import pipeline, retry
from sales_etl.storage import container as storage
from sales_etl_dev import devstack

from .clirun import assert_clean, environment, project, run
from .conftest import names


def park(cc: ContainerClient, name: str, dataset_version: str) -> None:
    cc.get_blob_client(name).upload_blob(
        b"x\n",
        metadata={
            "attempts": "1",
            "kind": "data",
            "app_version": __version__,
            "dataset_version": dataset_version,
            "source_path": name.replace("failed/", "incoming/"),
        },
    )


def test_the_sweep_keeps_a_broken_datasets_files_until_it_is_fixed(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    extra = tmp_path / "datasets"
    extra.mkdir()
    broken = extra / "customers.toml"
    broken.write_text('name = "customers"\nversion = 1\n[columns\n')
    with_broken = replace(settings, datasets_dir=extra)
    sales_version = dataset_version(get_dataset("sales"))
    park(cc, "failed/customers/c.csv", "")  # failed while its file was broken
    park(cc, "failed/sales/same.csv", sales_version)  # a data failure, nothing changed
    park(cc, "failed/sales/older.csv", "0-oldfingerprint")  # its dataset changed since
    report = retry.sweep(with_broken)
    assert report.retried == ["incoming/sales/older.csv"]
    assert sorted(report.kept) == ["failed/customers/c.csv", "failed/sales/same.csv"]
    assert names(cc) == ["failed/customers/c.csv", "failed/sales/same.csv", "incoming/sales/older.csv"]
    broken.unlink()  # fixed (the shipped definition applies again): its files are retried
    report = retry.sweep(with_broken)
    assert report.retried == ["incoming/customers/c.csv"]
    assert names(cc, "failed/") == ["failed/sales/same.csv"]


def test_a_derive_too_deep_to_evaluate_is_a_broken_dataset_not_a_crash(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path
) -> None:
    """An expression Python's parser cannot nest (RecursionError, not ValueError) must break
    only its own dataset: its files fail with the reason (not an exception out of the
    function), and the sweep still judges the other datasets' failures."""
    extra = tmp_path / "datasets"
    extra.mkdir()
    (extra / "customers.toml").write_text(
        'name = "customers"\nversion = 1\nbusiness_key = ["customer_id"]\n'
        '[columns.customer_id]\ntype = "integer"\nrequired = true\n'
        '[columns.score]\ntype = "integer"\nderive = "' + "customer_id" + "+customer_id" * 30_000 + '"\n'
    )
    with_broken = replace(settings, datasets_dir=extra)
    (tmp_path / "c.csv").write_text("customer_id,score\n1,\n")
    customers = storage.upload(cc, tmp_path / "c.csv", dataset="customers")
    failed = pipeline.process_blob(cc.get_blob_client(customers), with_broken)
    assert (failed.status, failed.reason_code) == ("failed", "unknown_dataset")
    assert "customers.toml" in (failed.error or "") and "derive" in (failed.error or "")
    assert len(names(cc, "failed/customers/")) == 1
    park(cc, "failed/sales/older.csv", "0-oldfingerprint")  # its dataset changed since
    report = retry.sweep(with_broken)
    assert report.retried == ["incoming/sales/older.csv"], report


def test_datasets_and_doctor_name_a_broken_file_and_check_every_other(
    stack: devstack.StackState, tmp_path: Path
) -> None:
    """One broken file in DATASETS_DIR: `sales-etl datasets`, `datasets check` and `doctor`
    name it in one line and still list and check the shipped datasets (formerly the first
    broken file stopped each command before any other dataset was looked at, and doctor's
    key check failed on it too)."""
    home = project(tmp_path / "checkout", stack)
    extra = tmp_path / "datasets"
    extra.mkdir()
    (extra / "returns.toml").write_text(
        'name = "returns"\nbusiness_key = ["id"]\n[columns.id]\ntype = "text"\n'
        'required = true\n[columns."qty\\nx"]\ntype = "integer"\nsql = "qty"\ncolour = 3\n'
    )
    env = environment(home, {"DATASETS_DIR": str(extra)})
    broken = f'dataset file {extra / "returns.toml"}: columns."qty\\nx": unknown key(s) colour'
    checked = run("sales-etl datasets check", env, tmp_path)
    assert_clean(checked, "datasets check")
    assert checked.code == 1, checked.text
    for name in ("customers", "products", "sales", "stores", "suppliers"):
        assert f"{name}: ok" in checked.out, checked.text
    assert f"returns: FAILED\n  - {broken}\n" in checked.out, checked.text
    listed = run("sales-etl datasets", env, tmp_path)
    assert listed.code == 1 and "sales: table sales" in listed.out, listed.text
    assert f"returns: BROKEN: {broken}\n" in listed.out, listed.text
    doctor = run("sales-etl doctor", env, tmp_path)
    lines = doctor.out.splitlines()
    assert any(line.startswith("PASS  encryption keys") for line in lines), doctor.text
    assert any(line.startswith("FAIL  datasets") and broken in line for line in lines), doctor.text
