"""One name for one thing: the ledger's bigint is ``run_id``, the run's UUID ``run_uuid``
(logs, telemetry, blob metadata, rejects names); metadata written before keeps being read."""

from __future__ import annotations

from dataclasses import replace

import pytest

from sales_etl.config.keys import make_protector
from sales_etl.config.settings import load_settings
from sales_etl.core.errors import ConfigError
from sales_etl.datasets.reader import dataset_version, get_dataset
from sales_etl.db.ledger import RunRecord
from sales_etl.stages import protect
from sales_etl.storage import container as storage

UUID = "0b4f8a6e-8f5c-4d27-9a51-3f0e6c1d2b7a"


def test_metadata_names_the_run_by_run_uuid_and_still_reads_run_id() -> None:
    assert storage.RUN_UUID == "run_uuid" and storage.LEGACY_RUN_UUID == "run_id"
    assert storage.run_uuid_of({"run_uuid": UUID}) == UUID
    assert storage.run_uuid_of({"run_id": UUID}) == UUID  # moved by an earlier version
    assert storage.run_uuid_of({"run_uuid": UUID, "run_id": "older"}) == UUID
    assert storage.run_uuid_of({"run_uuid": "", "run_id": UUID}) == UUID
    assert storage.run_uuid_of({"attempts": "1"}) == ""
    assert storage.run_uuid_of(None) == ""


@pytest.mark.parametrize(
    "tampered",
    [
        "a" * 7000,
        "%0A%0Dfake%20line%00",
        "x\ty",
        "../../etc",
        f"{UUID}\n",
        f"{UUID}x",
        "{" + UUID + "}",
        "not-a-uuid-at-all-but-36-characters!",
    ],
)
def test_tampered_run_uuid_metadata_names_no_run(tampered: str) -> None:
    """Metadata is untrusted: only a UUID names a run (what the sweep logs as the record's
    ``run_uuid`` field); a tampered ``run_uuid`` falls back to a sound ``run_id``."""
    assert storage.run_uuid_of({"run_uuid": tampered}) == ""
    assert storage.run_uuid_of({"run_id": tampered}) == ""
    assert storage.run_uuid_of({"run_uuid": tampered, "run_id": UUID}) == UUID
    assert storage.run_uuid_of({"run_uuid": UUID.upper()}) == UUID  # canonical form


def test_a_record_has_a_uuid_before_the_ledger_gives_it_a_run_id() -> None:
    rec = RunRecord(dataset="sales", blob_path="incoming/x.csv", trigger="blob")
    assert rec.run_id is None and len(rec.run_uuid) == 36
    assert rec.run_uuid != RunRecord(dataset="sales", blob_path="x", trigger="cli").run_uuid


def test_the_rejects_file_is_named_after_the_run_uuid() -> None:
    r = storage.route("incoming/sales/day.csv")
    assert r.rejects(UUID) == f"rejected/sales/day.csv.{UUID}.rejects.csv"


def test_dataset_version_is_the_declared_version_and_the_spec_fingerprint() -> None:
    sales = get_dataset("sales")
    assert dataset_version(sales) == f"{sales.version}-{sales.fingerprint}"
    assert dataset_version(replace(sales, fingerprint="f00")) != dataset_version(sales)
    assert dataset_version(replace(sales, version=sales.version + 1)) != dataset_version(sales)


def test_make_protector_needs_keys_only_for_sensitive_columns() -> None:
    sales = get_dataset("sales")
    plain = replace(
        sales,
        columns=tuple(
            replace(c, options=tuple((k, v) for k, v in c.options if k != "sensitive")) for c in sales.columns
        ),
    )
    keyless = load_settings({})
    assert make_protector(keyless, plain) is None
    with pytest.raises(ConfigError, match="FERNET_KEYS"):
        make_protector(keyless, sales)
    keyed = load_settings({"FERNET_KEYS": "x" * 43 + "=", "BLIND_INDEX_KEY": "b" * 43 + "="})
    protector = make_protector(keyed, sales)
    assert isinstance(protector, protect.Protector)
    assert protector.decrypt(protector.encrypt("CUST-1")) == "CUST-1"
