"""Issue 9 §4 and §6 (tampered retry metadata), as an attacker would try them, on the real
Azurite and PostgreSQL: nothing sensitive leaves in error text, metadata or logs; no blob
name escapes its folder; untrusted retry metadata never stops the sweep or strands a blob."""

from __future__ import annotations

import csv
import io
import logging
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg2
import pytest
from azure.storage.blob import (
    AccountSasPermissions,
    ContainerClient,
    ResourceTypes,
    generate_account_sas,
)
from click.testing import CliRunner

from sales_etl.cli.commands import main
from sales_etl.config.settings import Secret, Settings, StorageSettings
from sales_etl.core.errors import classify
from sales_etl.flow import pipeline, retry
from sales_etl.flow.requeue import requeue
from sales_etl.stages.names import quote_meta
from sales_etl.storage import container as storage
from sales_etl_dev import devstack, hostcall
from sales_etl_dev.generate import generate

from .conftest import names, query

SECRET = "CUST-LEAK-7F3A9"  # a plaintext customer id planted in malformed rows
SECRET2 = "CUST-LEAK-B41C2"


# ----------------------------------------------------------------------------- helpers


def _sas(stack: devstack.StackState, cc: ContainerClient) -> str:
    return generate_account_sas(
        cc.account_name,
        account_key=stack.account_key,
        resource_types=ResourceTypes(service=True, container=True, object=True),
        permission=AccountSasPermissions(
            read=True, write=True, delete=True, list=True, add=True, create=True, update=True, tag=True
        ),
        expiry=datetime.now(UTC) + timedelta(hours=2),
    )


def _raw_path(name: str) -> str:
    """The URL path of a blob name as stored: '.' and '..' segments sent percent-encoded,
    so that no HTTP stack resolves them (how an attacker stores them literally)."""
    return "/".join(
        "%2E" * len(p) if p in (".", "..") else urllib.parse.quote(p, safe="") for p in name.split("/")
    )


def _raw(
    method: str,
    cc: ContainerClient,
    sas: str,
    name: str,
    data: bytes = b"",
    metadata: dict[str, str] | None = None,
) -> None:
    headers = {"x-ms-blob-type": "BlockBlob"} if method == "PUT" else {}
    headers.update({f"x-ms-meta-{k}": v for k, v in (metadata or {}).items()})
    url = f"{cc.url}/{_raw_path(name)}?{sas}"
    assert url.startswith("http://127.0.0.1:")  # the test's own Azurite
    request = urllib.request.Request(  # noqa: S310
        url,
        method=method,
        data=data if method == "PUT" else None,
        headers=headers,
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        assert response.status in (201, 202)


def _snapshot(cc: ContainerClient, prefix: str = "") -> dict[str, tuple[str, dict[str, str]]]:
    return {
        b.name: (b.etag, dict(b.metadata or {}))
        for b in cc.list_blobs(name_starts_with=prefix, include=["metadata"])
    }


def _all_text(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for r in caplog.records:
        parts += [r.getMessage(), str(r.exc_text or ""), repr(r.args)]
    return "\n".join(parts)


@pytest.fixture
def sas(stack: devstack.StackState, cc: ContainerClient, clean: None) -> Iterator[str]:
    """A SAS for raw requests; afterwards, literal '.'/'..' blobs (which no SDK call can
    address) are deleted by their raw path, so that the next test starts clean."""
    token = _sas(stack, cc)
    yield token
    for name in names(cc):
        if any(p in (".", "..") for p in name.split("/")):
            _raw("DELETE", cc, token, name)


def _bad_file(tmp_path: Path) -> Path:
    """A sales file whose line 3 holds a bare CR inside an unquoted field, around a
    customer id: Arrow's CSV parser quotes that row in its error."""
    g = generate(tmp_path / "leak.csv", 30, seed=91)
    lines = g.path.read_bytes().split(b"\n")
    fields = lines[2].split(b",")
    fields[1] = SECRET.encode() + b"\rX"
    lines[2] = b",".join(fields)
    path = tmp_path / "leak.csv"
    path.write_bytes(b"\n".join(lines))
    return path


# ----------------------------------------------------------------------------- §4 leaks


def test_row_content_never_leaves_in_error_text_metadata_or_logs(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, every level
    leak = storage.upload(cc, _bad_file(tmp_path))
    g = generate(tmp_path / "reject.csv", 20, seed=92)
    lines = g.path.read_text().split("\n")
    fields = lines[3].split(",")
    fields[1] = "=" + SECRET2  # a sensitive id that breaks its pattern: a row reject
    lines[3] = ",".join(fields)
    (tmp_path / "reject.csv").write_text("\n".join(lines))
    rejected = storage.upload(cc, tmp_path / "reject.csv")
    hostcall.invoke_blob_trigger(settings.container, leak)
    hostcall.invoke_blob_trigger(settings.container, rejected)
    # the sweep reads and logs the failure reason too (dead-letter line)
    retry.sweep(
        replace(settings, retry=replace(settings.retry, max_attempts=1)),
        now=storage.now_utc() + timedelta(days=1),
    )

    runs = query(
        settings, "SELECT blob_path, status, reason_code, coalesce(error, '') FROM etl_runs ORDER BY run_id"
    )
    by_path = {r[0]: r for r in runs}
    # the file is accounted for: failed as a whole (bad_csv, with its line) or its bad row
    # rejected alone; either way, what is said about it never quotes the row
    assert by_path[leak][1:3] in {("failed", "bad_csv"), ("loaded", None)}
    if by_path[leak][1] == "failed":
        assert "line" in by_path[leak][3] and "columns" in by_path[leak][3]
    assert by_path[rejected][1] == "loaded"
    for row in runs:
        assert SECRET not in row[3] and SECRET2 not in row[3]
    blobs = _snapshot(cc)
    assert any(n.startswith(("failed/", "deadletter/")) for n in blobs) or by_path[leak][1] == "loaded"
    for name, (_, meta) in blobs.items():
        for value in meta.values():
            assert SECRET not in urllib.parse.unquote(value), (name, value)
            assert SECRET2 not in urllib.parse.unquote(value), (name, value)
    reasons, raw_rows = [], []
    for name in blobs:
        if name.startswith("rejected/"):
            text = cc.download_blob(name).readall().decode()
            for reject in list(csv.reader(io.StringIO(text)))[1:]:
                reasons.append(reject[2])
                raw_rows.append(reject[3])
    assert any(SECRET2 in r for r in raw_rows)  # the raw row is kept, for the operator
    assert reasons and not any(SECRET in r or SECRET2 in r for r in reasons)
    text = _all_text(caplog)
    assert "bad_csv" in text or "failed" in text or by_path[leak][1] == "loaded"
    assert SECRET not in text and SECRET2 not in text


def test_a_file_without_header_never_quotes_its_first_row(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A file sent without its header: its first row is read as one. When that row holds
    one value twice (a customer id in two columns), the duplicate_column error names the
    positions, never the value (it is a row's content, not a column name)."""
    caplog.set_level(logging.DEBUG)
    g = generate(tmp_path / "headerless.csv", 5, seed=93)
    lines = g.path.read_text().split("\n")[1:]  # no header
    fields = lines[0].split(",")
    fields[1] = fields[2] = SECRET
    lines[0] = ",".join(fields)
    (tmp_path / "headerless.csv").write_text("\n".join(lines))
    blob = storage.upload(cc, tmp_path / "headerless.csv")
    hostcall.invoke_blob_trigger(settings.container, blob)
    [(status, code, error)] = query(settings, "SELECT status, reason_code, error FROM etl_runs")
    assert (status, code) == ("failed", "duplicate_column")
    assert "positions 2 and 3" in error and SECRET not in error
    blobs = _snapshot(cc)
    assert [n for n in blobs if n.startswith("failed/")]
    for name, (_, meta) in blobs.items():
        for value in meta.values():
            assert SECRET not in urllib.parse.unquote(value), (name, value)
    assert "duplicate_column" in _all_text(caplog) or "appears twice" in _all_text(caplog)
    assert SECRET not in _all_text(caplog)


def test_database_data_errors_lose_the_value(settings: Settings) -> None:
    conn = psycopg2.connect(**settings.require_database().connect_kwargs())
    try:
        with conn.cursor() as cur, pytest.raises(psycopg2.DataError) as err:
            cur.execute("SELECT %s::integer", (SECRET,))
    finally:
        conn.close()
    assert SECRET in str(err.value)  # what PostgreSQL says
    error = classify(err.value)
    assert error.code == "db_data" and "22P02" in error.message
    assert SECRET not in error.message


def test_sas_signature_never_reaches_a_log_line(
    stack: devstack.StackState,
    settings: Settings,
    clean: None,
    cc: ContainerClient,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    token = _sas(stack, cc)
    signature = urllib.parse.parse_qs(token)["sig"][0]
    endpoint = storage.service_client(settings.require_storage()).url.rstrip("/")
    sas_settings = replace(
        settings,
        storage=StorageSettings(
            "SalesStorage", connection_string=Secret(f"BlobEndpoint={endpoint};SharedAccessSignature={token}")
        ),
    )
    caplog.set_level(logging.DEBUG)
    sas_cc = storage.container_client(sas_settings)
    good = storage.upload(sas_cc, generate(tmp_path / "sas.csv", 50, seed=93).path)
    bad = storage.upload(sas_cc, _bad_file(tmp_path))
    for name in (good, bad):
        pipeline.process_blob(sas_cc.get_blob_client(name), sas_settings)
    retry.sweep(sas_settings, now=storage.now_utc() + timedelta(days=1), force=True)
    text = _all_text(caplog)
    http_lines = [r.getMessage() for r in caplog.records if r.name.startswith("urllib3")]
    assert any("sig=***" in line for line in http_lines)  # the HTTP stack did log its URLs
    for form in {
        signature,
        urllib.parse.quote(signature, safe=""),
        urllib.parse.quote(signature),
        signature[:12],
    }:
        assert form not in text


# ----------------------------------------------------------------------------- §4 names


def test_traversal_names_touch_nothing_through_pipeline_trigger_and_cli(
    settings: Settings, sas: str, cc: ContainerClient, tmp_path: Path
) -> None:
    data = generate(tmp_path / "victim.csv", 40, seed=94).path.read_bytes()
    victim = "processed/sales/2026/01/01/victim.csv"
    cc.get_blob_client(victim).upload_blob(data)
    cc.get_blob_client("deadletter/sales/dl.csv").upload_blob(data)
    cc.get_blob_client("incoming/sales/x.csv").upload_blob(data)
    # stored literally: listed under incoming/, but any SDK call resolves it elsewhere
    _raw("PUT", cc, sas, "incoming/../deadletter/sales/dl.csv", data)
    _raw("PUT", cc, sas, "incoming/./sales/x.csv", data)
    cc.get_blob_client("incoming/%2e%2e/processed/sales/2026/01/01/victim.csv").upload_blob(data)
    before = _snapshot(cc)
    assert "incoming/../deadletter/sales/dl.csv" in before

    attempts = [
        "incoming/../processed/sales/2026/01/01/victim.csv",
        "incoming/../deadletter/sales/dl.csv",
        "incoming/./sales/x.csv",
        "incoming/%2e%2e/processed/sales/2026/01/01/victim.csv",
        "incoming/sales/%2E%2E/%2E%2E/deadletter/sales/dl.csv",
    ]
    for name in attempts:
        rec = pipeline.process_blob(cc.get_blob_client(name), settings, trigger="cli")
        assert (rec.status, rec.reason_code) == ("failed", "unsafe_name"), name
    hostcall.invoke_blob_trigger(settings.container, "incoming/../deadletter/sales/dl.csv")
    result = CliRunner().invoke(main, ["process", "incoming/sales/../../" + victim])
    # the command line refuses it before any storage call (blobpath), in one line
    assert result.exit_code == 1 and "'..' path segments are not allowed" in result.output

    assert _snapshot(cc) == before  # every folder exactly as it was
    assert query(settings, "SELECT count(*) FROM sales") == [(0,)]
    runs = query(settings, "SELECT blob_path, status, reason_code, error FROM etl_runs")
    # each pipeline call and the trigger record their refusal; the command line refuses the
    # operator's typed path before it names any blob (no ledger row: nothing was attempted)
    assert len(runs) == len(attempts) + 1
    assert all(r[1:3] == ("failed", "unsafe_name") and "refused" in r[3] for r in runs)


def test_traversal_names_and_tampered_paths_through_the_sweep(
    settings: Settings, sas: str, cc: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    victim = "processed/sales/2026/01/01/victim.csv"
    cc.get_blob_client(victim).upload_blob(b"victim\n")
    cc.get_blob_client("deadletter/sales/dl.csv").upload_blob(b"dl\n")
    meta = {"attempts": "1", "kind": "transient"}
    _raw("PUT", cc, sas, "failed/sales/../../" + victim, b"evil\n", meta)
    tampered = {
        "incoming/../" + victim,
        "incoming/%252e%252e/deadletter/sales/dl.csv",
        "incoming/sales/../../deadletter/sales/dl.csv",
        "processed/sales/x.csv",
        "incoming\\..\\" + victim,
    }
    for i, path in enumerate(sorted(tampered)):
        cc.get_blob_client(f"failed/sales/t{i}.csv").upload_blob(
            b"t\n", metadata={**meta, "source_path": quote_meta(path)}
        )
    kept = {**_snapshot(cc, "processed/"), **_snapshot(cc, "deadletter/")}

    report = retry.sweep(settings, now=storage.now_utc() + timedelta(days=1))

    assert {**_snapshot(cc, "processed/"), **_snapshot(cc, "deadletter/")} == kept
    assert report.refused == ["failed/sales/../../" + victim]
    assert sorted(report.retried) == [f"incoming/sales/t{i}.csv" for i in range(len(tampered))]
    assert names(cc, "incoming/") == sorted(report.retried)
    assert names(cc, "failed/") == ["failed/sales/../../" + victim]  # untouched, reported
    assert any(r.levelno == logging.ERROR and "refused" in r.getMessage() for r in caplog.records)


def test_requeue_all_refuses_traversal_names_and_goes_on(
    settings: Settings, sas: str, cc: ContainerClient
) -> None:
    """`sales-etl requeue --all` lists failed/ and deadletter/ like the sweep: a literal
    '..' name is refused (never addressed: with a shared key the request fails to
    authenticate and stopped the whole requeue), the other blobs are requeued, and a
    tampered source_path is refused, not repaired."""
    victim = "processed/sales/2026/01/01/victim.csv"
    cc.get_blob_client(victim).upload_blob(b"victim\n")
    _raw("PUT", cc, sas, "failed/sales/../../" + victim, b"evil\n", {"attempts": "1"})
    cc.get_blob_client("failed/sales/sound.csv").upload_blob(b"sound\n")
    cc.get_blob_client("deadletter/sales/tampered.csv").upload_blob(
        b"t\n", metadata={"source_path": quote_meta("incoming/sales/../../processed/sales/t.csv")}
    )
    kept = _snapshot(cc, "processed/")

    report = requeue(settings, everything=True)

    assert report.refused == ["failed/sales/../../" + victim]
    assert sorted(m.target for m in report.moved) == [
        "incoming/sales/sound.csv",
        "incoming/sales/tampered.csv",
    ]
    assert _snapshot(cc, "processed/") == kept
    assert names(cc, "incoming/") == ["incoming/sales/sound.csv", "incoming/sales/tampered.csv"]
    assert names(cc, "failed/") == ["failed/sales/../../" + victim]


# ----------------------------------------------------------------------------- §6 metadata


def _failed(cc: ContainerClient, name: str, **meta: str) -> None:
    cc.get_blob_client(f"failed/sales/{name}").upload_blob(b"data\n", metadata={"kind": "transient", **meta})


def test_tampered_retry_metadata_never_stops_the_sweep(
    settings: Settings, clean: None, cc: ContainerClient, caplog: pytest.LogCaptureFixture
) -> None:
    now = storage.now_utc()
    naive = "%Y-%m-%dT%H:%M:%S"
    _failed(cc, "a.csv", attempts="abc")
    _failed(cc, "b.csv", attempts="-50")
    _failed(cc, "c.csv", attempts="2.0")
    _failed(cc, "d.csv", attempts="1", next_attempt_at=(now - timedelta(hours=1)).strftime(naive))
    _failed(cc, "e.csv", attempts="1", next_attempt_at=(now + timedelta(hours=1)).strftime(naive))
    _failed(cc, "f.csv", attempts="1", next_attempt_at="9999-12-31T00:00:00+00:00")
    _failed(cc, "g.csv", attempts="99999")
    _failed(cc, "h.csv", attempts="1", next_attempt_at="not a time")
    _failed(cc, "i.csv", attempts="1")
    cc.get_blob_client("failed/sales/i.csv").create_snapshot()  # its delete fails: 409
    _failed(cc, "zz.csv", attempts="1")  # listed last: reached whatever came before

    first = retry.sweep(settings, now=now)

    assert sorted(first.retried) == [f"incoming/sales/{n}.csv" for n in ("a", "b", "c", "d", "h", "zz")]
    assert sorted(first.waiting) == ["failed/sales/e.csv", "failed/sales/f.csv"]
    assert first.deadlettered == ["deadletter/sales/g.csv"]
    assert first.errors == ["failed/sales/i.csv"]
    assert any(r.levelno == logging.ERROR and "failed/sales/i.csv" in r.getMessage() for r in caplog.records)
    attempts = {
        n: cc.get_blob_client(f"incoming/sales/{n}.csv").get_blob_properties().metadata["attempts"]
        for n in "abc"
    }
    assert attempts == {"a": "1", "b": "1", "c": "2"}  # sound again, whatever it said
    cc.get_blob_client("failed/sales/i.csv").delete_blob(delete_snapshots="include")

    later = retry.sweep(settings, now=now + timedelta(seconds=settings.retry.max_seconds + 60))
    assert sorted(later.retried) == ["incoming/sales/e.csv", "incoming/sales/f.csv"]
    assert names(cc, "failed/") == []


def test_retry_metadata_at_the_edges_of_its_types_never_stops_the_sweep(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    """Times that overflow when converted to UTC are unreadable, so due; a count written
    with a huge exponent is clamped without being expanded (it would take minutes)."""
    now = storage.now_utc()
    _failed(cc, "early.csv", attempts="1", next_attempt_at="0001-01-01T00:00:00+14:00")
    _failed(cc, "late.csv", attempts="1", next_attempt_at="9999-12-31T23:59:59-14:00")
    _failed(cc, "huge.csv", attempts="1e9999999")
    _failed(cc, "tiny.csv", attempts="-1e9999999")
    report = retry.sweep(settings, now=now)
    assert report.errors == []
    assert sorted(report.retried) == [f"incoming/sales/{n}.csv" for n in ("early", "late", "tiny")]
    assert report.deadlettered == ["deadletter/sales/huge.csv"]
    assert names(cc, "failed/") == []


def test_tampered_attempts_never_stop_requeue_recording_its_moves(
    settings: Settings, clean: None, cc: ContainerClient
) -> None:
    """requeue reads the count as the sweep does: a huge one (past the ledger's integer)
    is clamped, so every move is still recorded."""
    _failed(cc, "huge.csv", attempts="99999999999999999999")
    _failed(cc, "float.csv", attempts="2.0")
    _failed(cc, "junk.csv", attempts="abc")
    report = requeue(settings, everything=True)
    assert report.unrecorded == ""
    assert {m.source: m.attempts for m in report.moved} == {
        "failed/sales/huge.csv": settings.retry.max_attempts,
        "failed/sales/float.csv": 2,
        "failed/sales/junk.csv": 0,
    }
    assert sorted(query(settings, "SELECT blob_path, attempt FROM etl_runs")) == [
        ("incoming/sales/float.csv", 2),
        ("incoming/sales/huge.csv", 5),
        ("incoming/sales/junk.csv", 0),
    ]


@pytest.mark.parametrize(
    ("claimed", "attempt"),
    [("abc", 1), ("-50", 1), ("2.0", 3), ("99999", 6), ("1e9999999", 6), ("-1e9999999", 1)],
)
def test_tampered_attempts_on_an_incoming_blob_still_load_once(
    settings: Settings, clean: None, cc: ContainerClient, tmp_path: Path, claimed: str, attempt: int
) -> None:
    assert settings.retry.max_attempts == 5
    g = generate(tmp_path / "t.csv", 30, seed=95)
    name = "incoming/sales/tampered.csv"
    cc.get_blob_client(name).upload_blob(g.path.read_bytes(), metadata={"attempts": claimed})
    hostcall.invoke_blob_trigger(settings.container, name)
    runs: list[Any] = query(settings, "SELECT status, attempt, rows_loaded FROM etl_runs")
    assert runs == [("loaded", attempt, 30)]
    assert names(cc, "incoming/") == [] and len(names(cc, "processed/")) == 1
