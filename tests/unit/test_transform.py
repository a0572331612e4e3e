import pytest

from sales_etl.stages.transform import round_half_up

from .helpers import GOOD, HEADER, csv_of, run


def codes(text: str) -> dict[int, str]:
    return {r.line: r.code for r in run(text).rejects}


def test_valid_row_is_normalised_and_split() -> None:
    result = run(csv_of(GOOD))
    assert result.rejects == []
    row = result.frame.iloc[0].to_dict()
    assert row["payment_method"] == "credit card"  # trimmed, lower case
    assert row["sale_date"] == "2025-10-09" and row["sale_time"] == "08:00:00"
    assert row["quantity"] == "2" and row["unit_price"] == "10.00"
    assert list(result.lines) == [2]


def test_empty_discount_defaults_to_zero_and_total_is_derived() -> None:
    row = "TX-2,CUST-001,PROD-001,STORE-001,3,19.99,,,cash,2025-10-09 08:00:00"
    frame = run(csv_of(row)).frame
    assert frame.loc[0, "discount"] == "0"
    assert frame.loc[0, "total_amount"] == "59.97"


def test_total_rounds_half_up() -> None:
    # 1 * 26.75 * (1 - 0.9) = 2.675 -> 2.68 (binary floats would give 2.67)
    row = "TX-3,C,P,S,1,26.75,0.9,,cash,2025-10-09 08:00:00"
    assert run(csv_of(row)).frame.loc[0, "total_amount"] == "2.68"
    assert list(round_half_up(__import__("numpy").array([0.125, -0.125, 2.675]), 2)) == [0.13, -0.13, 2.68]


@pytest.mark.parametrize(
    ("field", "value", "code"),
    [
        ("quantity", "0", "out_of_range"),
        ("quantity", "-1", "out_of_range"),
        ("quantity", "1.5", "bad_integer"),
        ("quantity", "3000000000", "out_of_range"),
        ("quantity", "1,000", "bad_integer"),
        ("unit_price", "-1.00", "out_of_range"),
        ("unit_price", "1.234", "too_many_decimals"),
        ("unit_price", "1,50", "bad_decimal"),
        ("unit_price", "1.000,50", "bad_decimal"),
        ("discount", "1.01", "out_of_range"),
        ("discount", "-0.1", "out_of_range"),
        ("total_amount", "99.99", "total_mismatch"),
        ("payment_method", "bitcoin", "bad_value"),
        ("timestamp", "2025-02-30 10:00:00", "bad_timestamp"),
        ("timestamp", "2025/10/09 10:00:00", "bad_timestamp"),
        ("timestamp", "2025-10-09T10:00:00+02:00", "bad_timestamp"),
        ("customer_id", "", "missing_value"),
        ("customer_id", "   ", "missing_value"),
        ("store_id", "=cmd|' /C calc'!A0", "bad_format"),
        ("product_id", "P" * 101, "too_long"),
    ],
)
def test_each_rule_rejects_with_its_code(field: str, value: str, code: str) -> None:
    columns = HEADER.split(",")
    fields = GOOD.split(",")
    fields[columns.index(field)] = f'"{value}"' if "," in value else value
    result = run(csv_of(GOOD.replace("TX-1", "TX-0"), ",".join(fields)))
    assert [(r.line, r.code) for r in result.rejects] == [(3, code)]
    assert field in result.rejects[0].reason
    assert list(result.lines) == [2]  # the good row is kept


def test_stated_total_within_a_cent_is_accepted() -> None:
    row = "TX-4,C,P,S,2,10.00,0.10,18.01,cash,2025-10-09 08:00:00"
    assert run(csv_of(row)).rejects == []


def test_first_reason_wins_and_each_row_lands_once() -> None:
    rows = ["TX-5,C,P,S,0,-1,2,x,nope,bad", GOOD, "TX-6,C,P,S,1,1.00,0,1.00,cash,2025-10-09 08:00:00"]
    result = run(csv_of(*rows))
    assert len(result.rejects) == 1 and result.rejects[0].line == 2
    assert result.rejects[0].fields[0] == "TX-5"  # the raw row travels with the reject
    assert sorted(result.lines) == [3, 4]


def test_reordered_and_extra_columns() -> None:
    text = (
        "timestamp,store,transaction_id,payment_method,quantity,unit_price,customer_id,"
        "product_id,store_id,notes\n"
        "2025-10-09 08:00:00,x,TX-7,cash,1,5.00,C,P,S,hello\n"
    )
    result = run(text)
    assert result.rejects == []
    assert result.frame.loc[0, "total_amount"] == "5.00"  # optional columns absent: derived
    assert result.frame.loc[0, "store_id"] == "S"


def test_duplicate_key_in_a_chunk_is_rejected_with_the_first_line() -> None:
    other = GOOD.replace("TX-1", "TX-2")
    result = run(csv_of(GOOD, other, GOOD.replace("CUST-001", "CUST-002")))
    assert [(r.line, r.code) for r in result.rejects] == [(4, "duplicate_in_file")]
    assert "already appears on line 2" in result.rejects[0].reason
    assert list(result.lines) == [2, 3]


@pytest.mark.parametrize(
    ("price", "total", "code"),
    [
        ("99999999.99", "100000000.00", None),  # exactly one cent off: within the tolerance
        ("99999999.99", "99999999.98", None),
        ("99999999.99", "100000000.01", "total_mismatch"),  # two cents off
        ("99999999.99", "99999999.97", "total_mismatch"),
        ("100.00", "100.01", None),
        ("100.00", "100.02", "total_mismatch"),
        ("0.01", "0.00", None),
        ("0.01", "0.03", "total_mismatch"),
    ],
)
def test_total_tolerance_is_exact_at_any_magnitude(price: str, total: str, code: str | None) -> None:
    row = f"TX-1,C,P,S,1,{price},0,{total},cash,2025-10-09 08:00:00"
    assert codes(csv_of(row)) == ({} if code is None else {2: code})


def test_derived_total_rounds_half_up_exactly_for_large_values() -> None:
    # 8 * 9845686.25 * (1 - 0.6145) = 30364096.395 exactly -> .40 (floats say .39)
    row = "TX-1,C,P,S,8,9845686.25,0.6145,,cash,2025-10-09 08:00:00"
    assert run(csv_of(row)).frame.loc[0, "total_amount"] == "30364096.40"


@pytest.mark.parametrize("stamp", ["0000-01-01 00:00:00", "0000-12-31 23:59:59"])
def test_timestamps_outside_postgresql_range_are_rejected_alone(stamp: str) -> None:
    rows = [f"TX-{i},C,P,S,1,1.00,0,,cash,2025-10-09 08:00:00" for i in range(3)]
    rows.insert(1, f"TX-X,C,P,S,1,1.00,0,,cash,{stamp}")
    result = run(csv_of(*rows))
    assert [(r.line, r.code) for r in result.rejects] == [(3, "out_of_range")]
    assert "PostgreSQL" in result.rejects[0].reason
    assert list(result.lines) == [2, 4, 5]
    assert "0001-01-01" in run(csv_of(rows[0].replace("2025-10-09", "0001-01-01"))).frame.loc[0, "sale_date"]
