import gzip

import pytest

from sales_etl.errors import DataError

from .helpers import GOOD, HEADER, csv_of, parse, run


def test_bom_crlf_and_quoted_newlines() -> None:
    row = GOOD.replace("CUST-001", '"CUST-001"')
    text = "\ufeff" + HEADER + "\r\n" + row + "\r\n" + GOOD.replace("TX-1", "TX-2") + "\r\n"
    header, chunks = parse(text)
    assert header.columns[0] == "transaction_id"
    assert [c.lines for c in chunks] == [[2, 3]]


def test_line_numbers_count_physical_lines_of_multiline_records() -> None:
    multi = 'TX-9,"CUST\n001",PROD-001,STORE-001,1,1.00,0,1.00,cash,2025-10-09 08:00:00'
    _, chunks = parse(csv_of(multi, GOOD))
    assert chunks[0].lines == [2, 4]  # the second record starts on line 4


def test_gzip_is_detected_by_its_bytes() -> None:
    _, chunks = parse(gzip.compress(csv_of(GOOD).encode()), name="x.csv.gz")
    assert chunks[0].rows[0][0] == "TX-1"


@pytest.mark.parametrize(("data", "code"), [
    (b"", "empty_file"),
    (b"not gzip at all", "not_gzip"),
    (gzip.compress(csv_of(GOOD).encode())[:-12] + b"garbage!" * 2, "bad_gzip"),
])
def test_broken_containers_fail_the_file(data: bytes, code: str) -> None:
    with pytest.raises(DataError) as err:
        parse(data, name="x.csv.gz" if code != "empty_file" else "x.csv")
    assert err.value.code == code
    assert "x.csv" in err.value.message


@pytest.mark.parametrize(("text", "code", "words"), [
    (HEADER.replace(",", ";") + "\n", "bad_delimiter", "semicolons"),
    (HEADER.replace("store_id", "quantity") + "\n", "duplicate_column", "appears twice"),
    (HEADER.replace("customer_id,", "") + "\n", "missing_columns", "customer_id"),
])
def test_header_errors_name_the_problem(text: str, code: str, words: str) -> None:
    with pytest.raises(DataError) as err:
        parse(text)
    assert err.value.code == code and words in err.value.message
    assert "line 1" in err.value.message


def test_header_only_is_an_empty_load() -> None:
    _, chunks = parse(HEADER + "\n")
    assert chunks == []


def test_ragged_rows_and_nul_bytes_are_rejected_not_fatal() -> None:
    result = run(csv_of(GOOD + ",extra", GOOD.replace("TX-1", "TX-2"),
                        "TX-3,short", GOOD.replace("TX-1", "TX-\x004")))
    assert [(r.line, r.code) for r in result.rejects] == [
        (2, "field_count"), (4, "field_count"), (5, "nul_byte")]
    assert list(result.lines) == [3]


def test_latin1_bytes_fail_with_the_line() -> None:
    data = csv_of(GOOD).encode() + "TX-5,Jos\xe9".encode("latin-1") + b"\n"
    with pytest.raises(DataError) as err:
        parse(data)
    assert err.value.code == "not_utf8"


def test_unterminated_quote_fails_the_file_with_a_line() -> None:
    text = csv_of(GOOD, 'TX-2,"CUST-002,PROD' + "x" * (1 << 20))
    with pytest.raises(DataError) as err:
        parse(text)
    assert err.value.code == "bad_csv" and "line 3" in err.value.message


def test_chunks_respect_the_size() -> None:
    rows = [GOOD.replace("TX-1", f"TX-{i}") for i in range(25)]
    _, chunks = parse(csv_of(*rows), chunk_rows=10)
    assert [len(c) for c in chunks] == [10, 10, 5]
