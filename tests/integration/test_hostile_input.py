"""Hostile files through the blob trigger: each ends as a whole-file failure with a clear
reason, or with its bad rows rejected by reason code and its valid rows loaded."""

from __future__ import annotations

import csv
import gzip
import io
from pathlib import Path

import pytest
from azure.storage.blob import ContainerClient

from sales_etl.config.settings import Settings
from sales_etl.stages.names import unquote_meta
from sales_etl.stages.records import MAX_RECORD_BYTES
from sales_etl_dev import hostcall
from tools.sales_csv import HEADER, body, row

from .conftest import names, query


def good(n: int, prefix: str) -> list[str]:
    return [row(f"{prefix}-{i}") for i in range(n)]


def process(cc: ContainerClient, settings: Settings, name: str, data: bytes) -> str:
    blob = f"incoming/sales/{name}"
    cc.get_blob_client(blob).upload_blob(data, overwrite=True)
    hostcall.invoke_blob_trigger(settings.container, blob)
    return blob


FILE_FAILURES = [
    ("empty.csv", b"", "empty_file"),
    ("header-only-semicolons.csv", HEADER.replace(",", ";").encode() + b"\n", "bad_delimiter"),
    ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8, "not_csv"),
    ("sheet.xlsx", b"PK\x03\x04" + bytes(range(256)) * 8, "not_csv"),
    ("binary.csv", bytes(range(256)) * 8, "not_csv"),
    ("latin1-header.csv", HEADER.replace("store_id", "st\xf6re_id").encode("latin-1") + b"\n", "not_utf8"),
    ("fake.csv.gz", b"this is not gzip", "not_gzip"),
    ("corrupt.csv.gz", gzip.compress(body(*good(50, "GZ")))[:-30] + b"\x00" * 8, "bad_gzip"),
    ("dupcols.csv", body(header=HEADER + ",quantity"), "duplicate_column"),
    ("missing.csv", body(header=HEADER.replace(",payment_method", "")), "missing_columns"),
    ("unterminated.csv", body(*good(3, "UQ"), 'UQ-9,"CUST-001,PROD-001'), "bad_csv"),
]


@pytest.mark.parametrize(("name", "data", "code"), FILE_FAILURES, ids=[f[0] for f in FILE_FAILURES])
def test_whole_file_failures(
    settings: Settings, clean: None, cc: ContainerClient, name: str, data: bytes, code: str
) -> None:
    process(cc, settings, name, data)
    assert names(cc, "incoming/") == [] and names(cc, "failed/") == [f"failed/sales/{name}"]
    meta = cc.get_blob_client(f"failed/sales/{name}").get_blob_properties().metadata
    assert meta["reason_code"] == code and meta["kind"] == "data"
    assert name in unquote_meta(meta["reason"])
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    assert query(settings, "SELECT status, reason_code FROM etl_runs") == [("failed", code)]


ROW_REJECTS = {
    "quantity 0": (row("R-1", quantity="0"), "out_of_range"),
    "quantity negative": (row("R-2", quantity="-2"), "out_of_range"),
    "quantity fractional": (row("R-3", quantity="1.5"), "bad_integer"),
    "quantity beyond 32-bit": (row("R-4", quantity="4294967296"), "out_of_range"),
    "thousands separator": (row("R-5", unit_price="1,000.00"), "bad_decimal"),
    "comma decimal": (row("R-6", unit_price="10,00"), "bad_decimal"),
    "three decimals": (row("R-7", unit_price="10.001"), "too_many_decimals"),
    "negative price": (row("R-8", unit_price="-10.00"), "out_of_range"),
    "discount above 1": (row("R-9", discount="1.2"), "out_of_range"),
    "discount negative": (row("R-10", discount="-0.1"), "out_of_range"),
    "total disagrees": (row("R-11", total_amount="25.00"), "total_mismatch"),
    "impossible date": (row("R-12", timestamp="2025-02-30 10:00:00"), "bad_timestamp"),
    "other date format": (row("R-13", timestamp="10/09/2025 08:00"), "bad_timestamp"),
    "time zone": (row("R-14", timestamp="2025-10-09 08:00:00+02:00"), "bad_timestamp"),
    "empty id": (row("R-15", customer_id=""), "missing_value"),
    "whitespace id": (row("R-16", store_id="   "), "missing_value"),
    "id too long": (row("R-17", product_id="P" * 101), "too_long"),
    "formula": (row("R-18", customer_id="=cmd|' /C calc'!A0"), "bad_format"),
    "formula first": (row("=1+2"), "bad_format"),
    "too many fields": (row("R-19") + ",extra", "field_count"),
    "too few fields": ("R-20,CUST-001,PROD-001", "field_count"),
    "NUL byte": (row("R-21", customer_id="CUST\x00001"), "nul_byte"),
    "duplicate in file": (row("G-0"), "duplicate_in_file"),
}


def test_bad_rows_are_rejected_with_their_codes_and_the_rest_loads(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    lines = good(40, "G")
    expected: dict[int, str] = {}
    for bad, code in ROW_REJECTS.values():
        lines.append(bad)
        expected[len(lines) + 1] = code
    lines += good(40, "H")
    latin = row("R-22", customer_id="Jos\xe9").encode("latin-1")
    data = body(*lines) + latin + b"\n" + ("A" * (MAX_RECORD_BYTES - 1024)).encode() + b"\n"
    expected[len(lines) + 2] = "not_utf8"
    expected[len(lines) + 3] = "field_count"  # a line of megabytes (under the limit)
    process(cc, settings, "hostile-rows.csv", data)
    [(rejects_path,)] = query(settings, "SELECT rejects_path FROM etl_runs WHERE status = 'loaded'")
    assert names(cc, "rejected/") == [rejects_path]
    rejects = cc.download_blob(rejects_path).readall().decode()
    got = {int(r["line"]): r["reason_code"] for r in csv.DictReader(io.StringIO(rejects))}
    assert got == expected
    assert query(settings, "SELECT count(*) FROM sales") == [(80,)]
    [(read, loaded, rejected)] = query(
        settings, "SELECT rows_read, rows_loaded, rows_rejected FROM etl_runs WHERE status = 'loaded'"
    )
    assert (read, loaded, rejected) == (80 + len(expected), 80, len(expected))
    assert "'=1+2,CUST-001" in rejects
    # (a raw row that starts like a formula is neutralised for spreadsheets)


def test_extra_and_reordered_columns(settings: Settings, clean: None, cc: ContainerClient) -> None:
    header = (
        "note,timestamp,payment_method,total_amount,discount,unit_price,quantity,"
        "store_id,product_id,customer_id,transaction_id"
    )
    lines = [f"hello {i},2025-10-09 08:00:00,cash,20.00,0,10.00,2,S-1,P-1,C-1,RO-{i}" for i in range(25)]
    process(cc, settings, "reordered.csv", body(*lines, header=header))
    assert query(settings, "SELECT count(*) FROM sales") == [(25,)]
    assert query(settings, "SELECT unknown_columns FROM etl_runs") == [(["note"],)]


@pytest.mark.parametrize(
    "name",
    [
        "with spaces and ünïcødé 名前.csv",
        "a/..b/...c.csv",  # (a ".." segment itself is refused by the storage service)
        "x" * 200 + "/" + "y" * 200 + ".csv",
        "sales'; DROP TABLE sales;--.csv",
    ],
)
def test_strange_blob_names(
    settings: Settings, clean: None, cc: ContainerClient, name: str, tmp_path: Path
) -> None:
    blob = f"incoming/{name}"
    cc.get_blob_client(blob).upload_blob(body(*good(5, "N")), overwrite=True)
    hostcall.invoke_blob_trigger(settings.container, blob)
    placed = names(cc)
    assert len(placed) == 1 and placed[0].split("/")[0] in ("processed", "failed")
    assert ".." not in placed[0].split("/")
    assert query(settings, "SELECT count(*) FROM sales") == [
        (5 if placed[0].startswith("processed/") else 0,)
    ]
    assert query(settings, "SELECT blob_path FROM etl_runs") == [(blob,)]
    assert query(settings, "SELECT to_regclass('sales') IS NOT NULL") == [(True,)]
