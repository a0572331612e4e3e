"""A broken dataset file (DATASETS_DIR) fails only its own files, and the sweep neither
churns them nor stops judging the other datasets' failures."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from azure.storage.blob import ContainerClient

from sales_etl import __version__, pipeline, retry
from sales_etl.datasets import get_dataset
from sales_etl.settings import Settings

from .conftest import names


def park(cc: ContainerClient, name: str, dataset_version: str) -> None:
    cc.get_blob_client(name).upload_blob(b"x\n", metadata={
        "attempts": "1", "kind": "data", "app_version": __version__,
        "dataset_version": dataset_version, "source_path": name.replace("failed/", "incoming/")})


def test_the_sweep_keeps_a_broken_datasets_files_until_it_is_fixed(
        settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path) -> None:
    extra = tmp_path / "datasets"
    extra.mkdir()
    broken = extra / "customers.toml"
    broken.write_text('name = "customers"\nversion = 1\n[columns\n')
    with_broken = replace(settings, datasets_dir=extra)
    sales_version = pipeline.dataset_version(get_dataset("sales"))
    park(cc, "failed/customers/c.csv", "")  # failed while its file was broken
    park(cc, "failed/sales/same.csv", sales_version)  # a data failure, nothing changed
    park(cc, "failed/sales/older.csv", "0-oldfingerprint")  # its dataset changed since
    report = retry.sweep(with_broken)
    assert report.retried == ["incoming/sales/older.csv"]
    assert sorted(report.kept) == ["failed/customers/c.csv", "failed/sales/same.csv"]
    assert names(cc) == ["failed/customers/c.csv", "failed/sales/same.csv",
                         "incoming/sales/older.csv"]
    broken.unlink()  # fixed (the shipped definition applies again): its files are retried
    report = retry.sweep(with_broken)
    assert report.retried == ["incoming/customers/c.csv"]
    assert names(cc, "failed/") == ["failed/sales/same.csv"]
