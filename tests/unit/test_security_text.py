"""What may leave the process as text: the rejects formula guard, settings errors, error
scrubbing, blob-name confinement, and untrusted retry metadata (issue 9 §4, §6)."""

from __future__ import annotations

import csv
import io
import logging
from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from sales_etl.config.settings import RetrySettings, Settings, load_settings, read_bindings
from sales_etl.core import redact
from sales_etl.core.errors import ConfigError, DataError, UnsafeName, classify
from sales_etl.flow import retrypolicy
from sales_etl.stages import names
from sales_etl.stages.records import Reject
from sales_etl.stages.rejects import SAFE_START, RejectsWriter, guard

# ----------------------------------------------------------------------------- rejects

CONTROL = [chr(c) for c in (*range(0x00, 0x20), 0x7F, *range(0x80, 0xA0))]
FORMULA = ["=", "+", "-", "@", " ", "\uff1d", "\uff0b", "\uff0d", "\uff20", "\u3000", "\u200b", "\ufeff"]


@pytest.mark.parametrize("first", CONTROL + FORMULA, ids=lambda c: f"U+{ord(c):04X}")
def test_every_unsafe_first_character_is_neutralised(first: str) -> None:
    cell = first + "cmd|' /C calc'!A0"
    assert guard(cell) == "'" + cell


@pytest.mark.parametrize("first", ["a", "Z", "0", "9", "é", "Ж", *sorted(SAFE_START)])
def test_safe_first_characters_are_kept(first: str) -> None:
    assert guard(first + "x") == first + "x"


def test_the_rejects_file_guards_raw_row_and_reason() -> None:
    writer = RejectsWriter()
    writer.add(
        [
            Reject(2, "bad_value", '=HYPERLINK("x")', ("\n=1+1", "b")),
            Reject(3, "nul_byte", "contains a NUL byte", ("\x00@SUM(A1)", "c")),
            Reject(4, "bad_value", "quantity 'x' is not a whole number", ("TX-1", "x")),
        ]
    )
    rows = list(csv.reader(io.TextIOWrapper(writer.open_bytes(), encoding="utf-8", newline="")))
    writer.close()
    assert rows[0] == ["line", "reason_code", "reason", "raw_row"]
    for row in rows[1:]:
        for cell in row[2:]:
            first = cell[0]
            assert first == "'" or first.isalnum() or first in SAFE_START, row
    assert rows[1][2] == '\'=HYPERLINK("x")'
    assert rows[2][3].startswith("'\x00@SUM")
    assert rows[3][2:] == ["quantity 'x' is not a whole number", "TX-1,x"]


# ----------------------------------------------------------------------------- settings

ACCOUNT_KEY = "c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5c2VjcmV0a2V5MTIzNDU2Nzg5MA=="
CONNECTION = (
    f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={ACCOUNT_KEY};"
    "EndpointSuffix=core.windows.net"
)
SAS_URL = "https://acct.blob.core.windows.net/?sv=2022-11-02&ss=b&sp=rwdl&sig=AbCd%2Bsecret%3D"


def _settings_error(env: dict[str, str]) -> str:
    """What the app says about bad settings: a binding setting the host would refuse leaves
    only its own function out (read_bindings names it, load_settings does not fail on it)."""
    problems = " ".join(read_bindings(env).problems)
    try:
        load_settings(env)
    except ConfigError as err:
        return f"{err.message} {problems}"
    assert problems, f"no error for {sorted(env)}"
    return problems


@pytest.mark.parametrize("setting", ["SalesStorage__blobServiceUri", "SalesStorage__serviceUri"])
def test_a_connection_string_in_a_uri_setting_is_not_echoed(setting: str) -> None:
    message = _settings_error({setting: CONNECTION})
    assert setting in message and "https://" in message
    assert "belongs in SalesStorage itself" in message
    for part in (ACCOUNT_KEY, ACCOUNT_KEY[:20], "AccountKey", CONNECTION):
        assert part not in message


@pytest.mark.parametrize("setting", ["SalesStorage__blobServiceUri", "SalesStorage__serviceUri"])
def test_a_sas_url_in_a_uri_setting_is_refused_unechoed(setting: str) -> None:
    message = _settings_error({setting: SAS_URL})
    assert setting in message and "SAS" in message
    assert "sig=" not in message and "AbCd" not in message


def test_a_connection_string_in_the_credential_setting_is_not_echoed() -> None:
    message = _settings_error(
        {
            "SalesStorage__blobServiceUri": "https://acct.blob.core.windows.net",
            "SalesStorage__credential": CONNECTION,
        }
    )
    assert "SalesStorage__credential" in message and "managedidentity" in message
    assert ACCOUNT_KEY not in message and "AccountKey" not in message


HEX_KEY = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
PASTED_INTO = [
    "SWEEP_SCHEDULE",
    "SALES_TRIGGER_SOURCE",
    "RETRY_MAX_ATTEMPTS",
    "DESIRED_CHUNK_FRACTION",
    "DATASETS_DIR",
    "POSTGRES_SSLMODE",
]


@pytest.mark.parametrize(
    ("key", "setting"),
    [(ACCOUNT_KEY, s) for s in PASTED_INTO] + [(HEX_KEY, s) for s in [*PASTED_INTO, "SALES_CONTAINER"]],
)
def test_a_key_pasted_into_any_setting_is_not_echoed(key: str, setting: str) -> None:
    env = {"SalesStorage": "UseDevelopmentStorage=true", setting: key}
    if setting == "POSTGRES_SSLMODE":
        env.update(POSTGRES_HOST="localhost", POSTGRES_USER="u", POSTGRES_DB="d")
    message = _settings_error(env)
    assert setting in message and key not in message and key[:16] not in message
    assert key[:16].lower() not in message.lower()  # (not even lower-cased)


def test_harmless_values_are_still_shown() -> None:
    message = _settings_error(
        {
            "SalesStorage": "UseDevelopmentStorage=true",
            "SWEEP_SCHEDULE": "*/5 * * *",
            "SALES_TRIGGER_SOURCE": "webhook",
        }
    )
    assert "'*/5 * * *'" in message and "'webhook'" in message


# ----------------------------------------------------------------------------- error text


def _arrow_error(data: bytes) -> pa.ArrowInvalid:
    with pytest.raises(pa.ArrowInvalid) as err:
        pacsv.read_csv(
            io.BytesIO(data),
            read_options=pacsv.ReadOptions(column_names=["a", "b", "c"]),
            convert_options=pacsv.ConvertOptions(column_types={c: pa.string() for c in "abc"}),
        )
    return err.value


def test_arrow_row_content_is_dropped_from_error_text() -> None:
    exc = _arrow_error(b"TX-1,CUST-SECRET-1,STORE-1\nTX-2,CUST-SECRET-2\n")
    assert "CUST-SECRET-2" in str(exc)  # what Arrow says
    error = DataError(f"f.csv: near line 3: unreadable CSV: {exc}", code="bad_csv")
    assert "CUST-SECRET" not in error.message and "CUST-SECRET" not in str(error)
    assert error.message.startswith("f.csv: near line 3: unreadable CSV: ")
    assert "Expected 3 columns, got 2" in error.message
    transient = classify(exc)
    assert "CUST-SECRET" not in transient.message


def test_foreign_errors_lose_quoted_values_and_secrets() -> None:
    try:
        int("CUST-SECRET-3")
    except ValueError as exc:
        assert "CUST-SECRET-3" not in classify(exc).message
    url_error = OSError("Max retries exceeded with url: /acct/c/b?sv=1&sig=AbC%2Fd%3D&se=2")
    message = classify(url_error).message
    assert "AbC" not in message and "sig=***" in message
    encoded = DataError("copy source https://a/b%3Fsv%3D1%26sig%3DAbCsecret%253D%26se%3D2").message
    assert "AbCsecret" not in encoded and "sig%3D***" in encoded
    for text in (
        f"AccountKey={ACCOUNT_KEY};x",
        "postgresql://u:hunter2@h/db",
        "Bearer eyJabc.def",
        "password=hunter2 host=x",
    ):
        assert (
            "hunter2" not in DataError(text).message
            and ACCOUNT_KEY not in DataError(text).message
            and "eyJabc" not in DataError(text).message
        )


def test_every_log_record_is_scrubbed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    exc = _arrow_error(b"a,b,c\nTX-9,CUST-SECRET-9\n")
    logging.getLogger("urllib3.connectionpool").debug(
        '%s://%s:%s "%s %s %s" %s %s',
        "https",
        "acct",
        443,
        "GET",
        "/c/b?sv=1&sig=SiGnAtUrE%3D",
        "HTTP/1.1",
        200,
        5,
    )
    try:
        raise DataError("x") from exc
    except DataError:
        logging.getLogger("sales_etl").exception("failed: %s", exc)
    text = caplog.text + "".join(str(r.exc_text) for r in caplog.records)
    assert "SiGnAtUrE" not in text and "sig=***" in text
    assert "CUST-SECRET-9" not in text and "Expected 3 columns, got 2" in text
    assert redact.scrub("no secret here: line 4") == "no secret here: line 4"
    logging.getLogger("sales_etl").info("%s rows loaded", 5)
    assert caplog.records[-1].args == (5,)  # a harmless record keeps its template


# ----------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    "name",
    [
        "incoming/../processed/x.csv",
        "incoming/./x.csv",
        "incoming/sales/../../deadletter/x.csv",
        "incoming/%2e%2e/processed/x.csv",
        "incoming/%2E%2E/x.csv",
        "incoming/%252e%252e/x.csv",
        "incoming/sales/%2E/x.csv",
        "incoming\\..\\processed\\x.csv",
        "incoming/..\\x.csv",
        "incoming/\uff0e\uff0e/x.csv",
        "incoming/...",
        "incoming/sales//x.csv",
        "incoming/",
        "incoming",
        "incoming/x.csv/",
        "incoming/a\x00b.csv",
        "incoming/a\nb.csv",
        "incoming/x%0a.csv",
        "incoming/%ff.csv",
        "incoming/x.",
        "processed/x.csv",
        "incoming/" + "x" * 1100,
    ],
)
def test_names_that_escape_or_hide_are_refused(name: str) -> None:
    assert names.problem(name, "incoming") is not None
    with pytest.raises(UnsafeName) as err:
        names.confine(name, "incoming")
    assert err.value.code == "unsafe_name" and "\n" not in err.value.message
    assert "\x00" not in err.value.message


@pytest.mark.parametrize(
    "name",
    [
        "incoming/x.csv",
        "incoming/sales/x.csv.gz",
        "incoming/sales/2026/01/a b..c.csv",
        "incoming/sales/%20x.csv",
        "incoming/sales/.hidden.csv",
        "incoming/é.csv",
    ],
)
def test_ordinary_names_pass(name: str) -> None:
    assert names.confine(name, "incoming") == name


# ----------------------------------------------------------------------------- metadata


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("3", 3),
        ("2.0", 2),
        (" 4 ", 4),
        ("+1", 1),
        ("-50", 0),
        ("abc", 0),
        ("2.5", 0),
        ("nan", 0),
        ("inf", 0),
        ("", 0),
        (None, 0),
        ("1e3", 5),
        ("99999999999999999999", 5),
        ("-99999999999999999999", 0),
        ("0x10", 0),
        ("5", 5),
        ("6", 5),
    ],
)
def test_attempts_are_parsed_defensively(value: str | None, expected: int) -> None:
    assert retrypolicy.parse_attempts(value, 5) == expected


def test_times_without_a_zone_are_utc_and_far_future_is_clamped() -> None:
    assert retrypolicy.parse_time("2026-01-01T00:10:00") == datetime(2026, 1, 1, 0, 10, tzinfo=UTC)
    assert retrypolicy.parse_time("yesterday") is None
    moved = datetime(2026, 1, 1, tzinfo=UTC)
    settings = Settings(retry=RetrySettings(max_seconds=3600))
    due = retrypolicy.next_attempt({"next_attempt_at": "9999-12-31T00:00:00"}, moved, settings.retry)
    assert due == moved + timedelta(hours=1)
