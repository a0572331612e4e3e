import gzip

import pytest

from sales_etl.core.errors import DataError
from sales_etl.stages import decode, extract
from sales_etl.stages.records import record_fields

from .helpers import GOOD, HEADER, csv_of, parse, run


def test_bom_crlf_and_quoted_newlines() -> None:
    row = GOOD.replace("CUST-001", '"CUST-001"')
    text = "\ufeff" + HEADER + "\r\n" + row + "\r\n" + GOOD.replace("TX-1", "TX-2") + "\r\n"
    header, chunks = parse(text)
    assert header.columns[0] == "transaction_id"
    assert [c.lines.tolist() for c in chunks] == [[2, 3]]


def test_line_numbers_count_physical_lines_of_multiline_records() -> None:
    multi = 'TX-9,"CUST\n001",PROD-001,STORE-001,1,1.00,0,1.00,cash,2025-10-09 08:00:00'
    _, chunks = parse(csv_of(multi, GOOD))
    assert chunks[0].lines.tolist() == [2, 4]  # the second record starts on line 4


def test_gzip_is_detected_by_its_bytes() -> None:
    _, chunks = parse(gzip.compress(csv_of(GOOD).encode()), name="x.csv.gz")
    assert chunks[0].table.column("transaction_id")[0].as_py() == "TX-1"


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"", "empty_file"),
        (b"not gzip at all", "not_gzip"),
        (gzip.compress(csv_of(GOOD).encode())[:-12] + b"garbage!" * 2, "bad_gzip"),
    ],
)
def test_broken_containers_fail_the_file(data: bytes, code: str) -> None:
    with pytest.raises(DataError) as err:
        parse(data, name="x.csv.gz" if code != "empty_file" else "x.csv")
    assert err.value.code == code
    assert "x.csv" in err.value.message


@pytest.mark.parametrize(
    ("text", "code", "words"),
    [
        (HEADER.replace(",", ";") + "\n", "bad_delimiter", "semicolons"),
        (HEADER.replace("store_id", "quantity") + "\n", "duplicate_column", "appears twice"),
        (HEADER.replace("customer_id,", "") + "\n", "missing_columns", "customer_id"),
    ],
)
def test_header_errors_name_the_problem(text: str, code: str, words: str) -> None:
    with pytest.raises(DataError) as err:
        parse(text)
    assert err.value.code == code and words in err.value.message
    assert "line 1" in err.value.message


def test_header_only_is_an_empty_load() -> None:
    _, chunks = parse(HEADER + "\n")
    assert chunks == []


def test_ragged_rows_and_nul_bytes_are_rejected_not_fatal() -> None:
    result = run(
        csv_of(GOOD + ",extra", GOOD.replace("TX-1", "TX-2"), "TX-3,short", GOOD.replace("TX-1", "TX-\x004"))
    )
    assert [(r.line, r.code) for r in result.rejects] == [
        (2, "field_count"),
        (4, "field_count"),
        (5, "nul_byte"),
    ]
    assert list(result.lines) == [3]


def test_latin1_rows_are_rejected_and_the_rest_loads() -> None:
    latin = GOOD.replace("TX-1", "TX-5").replace("CUST-001", "Jos\xe9")
    data = (
        csv_of(GOOD).encode()
        + latin.encode("latin-1")
        + b"\n"
        + GOOD.replace("TX-1", "TX-6").encode()
        + b"\n"
    )
    result = run(data)
    assert [(r.line, r.code) for r in result.rejects] == [(3, "not_utf8")]
    assert "Jos\ufffd" in result.rejects[0].fields  # the raw row, undecodable bytes marked
    assert list(result.lines) == [2, 4]


def test_latin1_header_fails_the_file() -> None:
    with pytest.raises(DataError) as err:
        parse(HEADER.replace("store_id", "st\xf6re_id").encode("latin-1") + b"\n")
    assert err.value.code == "not_utf8" and "line 1" in err.value.message


def test_unterminated_quote_fails_the_file_with_a_line() -> None:
    text = csv_of(GOOD, 'TX-2,"CUST-002,PROD' + "x" * (1 << 20))
    with pytest.raises(DataError) as err:
        parse(text)
    assert err.value.code == "bad_csv" and "line 3" in err.value.message


def test_chunks_respect_the_size() -> None:
    rows = [GOOD.replace("TX-1", f"TX-{i}") for i in range(25)]
    _, chunks = parse(csv_of(*rows), chunk_rows=10)
    assert [len(c) for c in chunks] == [10, 10, 5]


def _rows(n: int) -> list[str]:
    out = []
    for i in range(n):
        cust = f'"CUST\n{i:03d}"' if i % 7 == 0 else f'"CUST,{i:03d}"' if i % 5 == 0 else "C"
        out.append(GOOD.replace("TX-1", f"TX-{i}").replace("CUST-001", cust))
    return out


@pytest.mark.parametrize("block_bytes", [64, 333, 1 << 20])
def test_block_boundaries_never_cut_a_record(block_bytes: int) -> None:
    """Small blocks put record and quoted-newline boundaries everywhere: same result."""
    rows = _rows(120)
    _, chunks = parse(csv_of(*rows), chunk_rows=17, block_bytes=block_bytes)
    assert all(c.rejects == [] and len(c) <= 17 for c in chunks)
    expected, line = [], 2
    for row in rows:
        expected.append(line)
        line += row.count("\n") + 1
    assert [n for c in chunks for n in c.lines.tolist()] == expected
    customers = [v for c in chunks for v in c.table.column("customer_id").to_pylist()]
    assert customers[:2] == ["CUST\n000", "C"] and customers[5] == "CUST,005"


def test_a_quote_inside_a_field_takes_the_exact_path() -> None:
    """`5" screen` is legal in an unquoted field for the csv module; the byte scan cannot
    tell, so the rest of the file is parsed by the csv module, with the same results."""
    odd = GOOD.replace("TX-1", "TX-2").replace("PROD-001", 'PROD-5"')
    rows = [GOOD, odd, *_rows(30)[1:]]
    _, chunks = parse(csv_of(*rows))
    lines = [n for c in chunks for n in c.lines.tolist()]
    products = [v for c in chunks for v in c.table.column("product_id").to_pylist()]
    customers = [v for c in chunks for v in c.table.column("customer_id").to_pylist()]
    assert len(lines) == 31 and lines[:3] == [2, 3, 4]
    assert products[1] == 'PROD-5"' and customers[7 + 1] == "CUST\n007"
    result = run(csv_of(*rows))
    assert (result.rejects[0].line, result.rejects[0].code) == (3, "bad_format")


def test_ignored_columns_are_never_materialised() -> None:
    extra = "".join(f",x{i}" for i in range(300))
    text = HEADER + extra + "\n" + GOOD + ",v" * 300 + "\n"
    header, chunks = parse(text)
    assert header.width == 310 and len(header.unknown) == 300
    assert chunks[0].table.column_names == HEADER.split(",")  # only what the dataset reads
    assert chunks[0].raw is not None and record_fields(chunks[0].raw[0].as_py()) == tuple(
        (GOOD + ",v" * 300).split(",")
    )


def test_decompressed_size_is_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "MAX_DECOMPRESSED_BYTES", 1 << 20)  # read by the gunzip stream
    data = gzip.compress(csv_of(*[GOOD.replace("TX-1", f"TX-{i}") for i in range(20_000)]).encode())
    with pytest.raises(DataError) as err:
        parse(data, name="big.csv.gz")
    assert err.value.code == "decompressed_too_large"


def test_exact_path_rejects_bad_quoting_and_countless_commas_alone() -> None:
    stray = GOOD.replace("TX-1", 'TX-5"A')  # a quote inside a field: the exact path
    rows = [
        stray,
        GOOD.replace("TX-1", "TX-2"),
        '"TX-3"x' + GOOD[4:],
        '"' + "ab," * 70_000 + '"x,' + "cd," * 70_000,
        GOOD.replace("TX-1", "TX-6"),
    ]
    _, chunks = parse(csv_of(*rows))
    rejects = {r.line: r.code for c in chunks for r in c.rejects}
    assert rejects == {4: "bad_quoting", 5: "field_count"}
    assert [int(n) for c in chunks for n in c.lines] == [2, 3, 6]
    wide = next(r for c in chunks for r in c.rejects if r.line == 5)
    assert len(wide.fields) == 1 and wide.fields[0].startswith('"ab,ab,')


def test_fast_and_exact_paths_agree_row_for_row() -> None:
    import random

    rnd = random.Random(9)
    pieces = [
        lambda i: GOOD.replace("TX-1", f"TX-{i}").encode(),
        lambda i: GOOD.replace("TX-1", f"TX-{i}").replace("CUST", "J\xf6se").encode("latin-1"),
        lambda i: GOOD.replace("TX-1", f"TX-{i}").replace("CUST", "C\x00").encode(),
        lambda i: GOOD.replace("TX-1", f"TX-{i}").encode() + b",extra",
        lambda i: GOOD.replace("TX-1", f"TX-{i}").replace("PROD", "P\rD").encode(),
        lambda i: GOOD.replace("TX-1", f"TX-{i}").replace("PROD-001", '"P\r\nD"').encode(),
        lambda i: b"",
        lambda i: b"  \t",
        lambda i: f"TX-{i},short".encode(),
    ]
    rows = [rnd.choice(pieces)(i) for i in range(400)]
    first = GOOD.replace("TX-1", "TX-0").encode()

    def outcome(first_row: bytes) -> tuple[dict[int, str], list[int]]:
        _, chunks = parse(HEADER.encode() + b"\n" + b"\n".join([first_row, *rows]) + b"\n", chunk_rows=37)
        return (
            {r.line: r.code for c in chunks for r in c.rejects},
            [int(n) for c in chunks for n in c.lines],
        )

    fast = outcome(first)
    exact = outcome(first.replace(b"PROD", b'PR"OD'))  # a stray quote: the exact path
    assert fast == exact
    assert set(fast[0].values()) == {"not_utf8", "nul_byte", "field_count", "bare_cr"}


def test_both_paths_reject_rows_only_through_the_one_rule_set(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every reject either parse path makes comes out of ``records.row_reject``: no path
    words a row reject of its own."""
    from sales_etl.stages import records, slowpath

    made: list[object] = []

    def spy(*args: object, **kwargs: object) -> records.Reject | None:
        reject = records.row_reject(*args, **kwargs)  # type: ignore[arg-type]
        made.append(reject)
        return reject

    monkeypatch.setattr(extract, "row_reject", spy)
    monkeypatch.setattr(slowpath, "row_reject", spy)
    bad = [GOOD.replace("TX-1", "TX-2") + ",extra", GOOD.replace("CUST", "C\x00"), "TX-3,short"]
    quoting = '"TX-4"x' + GOOD[4:]  # a quote inside a field: the exact path
    for rows, expected in ((bad, 3), ([quoting, *bad], 4)):  # the fast path, the exact path
        made.clear()
        _, chunks = parse(csv_of(GOOD, *rows))
        rejects = [r for c in chunks for r in c.rejects]
        assert len(rejects) == expected
        assert all(any(r is m for m in made) for r in rejects)
