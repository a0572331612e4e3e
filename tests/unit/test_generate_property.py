"""Property: every row is either valid (and fits the table) or rejected with a reason."""

import csv
import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sales_etl_dev.generate import BAD_KINDS, generate, make_frame

from .helpers import run

VALUES = {
    "quantity": st.one_of(st.integers(-5, 10).map(str), st.sampled_from(["", "1.5", "x", "99999999999"])),
    "unit_price": st.one_of(
        st.decimals(-10, 1000, places=2).map(str), st.sampled_from(["", "1.234", "1,00", "abc"])
    ),
    "discount": st.sampled_from(["", "0", "0.05", "0.10", "0.15", "1.5", "-0.1", "0.12345"]),
    "total_amount": st.sampled_from(["", "0.00", "10.00", "abc", "-1"]),
    "payment_method": st.sampled_from(["cash", " PayPal ", "bitcoin", "", "Debit Card"]),
    "timestamp": st.sampled_from(["2025-10-09 08:00:00", "2025-02-30 10:00:00", "", "2025-10-09"]),
    "customer_id": st.one_of(st.sampled_from(["CUST-1", "", " ", "=1+1"]), st.text(max_size=120)),
}


@st.composite
def rows(draw: st.DrawFn) -> list[list[str]]:
    n = draw(st.integers(1, 30))
    out: list[list[str]] = []
    for i in range(n):
        fields = {k: draw(v) for k, v in VALUES.items()}
        out.append(
            [
                f"TX-{i}",
                fields["customer_id"],
                "PROD-1",
                "STORE-1",
                fields["quantity"],
                fields["unit_price"],
                fields["discount"],
                fields["total_amount"],
                fields["payment_method"],
                fields["timestamp"],
            ]
        )
    return out


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows())
def test_every_row_lands_exactly_once(data: list[list[str]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer)  # CRLF line ends: fields holding \r or \n get quoted
    writer.writerow(
        [
            "transaction_id",
            "customer_id",
            "product_id",
            "store_id",
            "quantity",
            "unit_price",
            "discount",
            "total_amount",
            "payment_method",
            "timestamp",
        ]
    )
    writer.writerows(data)
    result = run(buffer.getvalue())
    valid, rejected = set(result.lines.tolist()), {r.line for r in result.rejects}
    # records start on the line after the previous one ends (fields may hold newlines)
    assert not valid & rejected
    assert len(valid) + len(rejected) == len([r for r in data if r != [""]])
    assert all(r.code and r.reason for r in result.rejects)
    f = result.frame
    if len(f):
        assert (f["quantity"].astype(int) >= 1).all()
        assert (f["quantity"].astype(int) <= 2**31 - 1).all()
        assert (f["unit_price"].astype(float) >= 0).all()
        assert f["discount"].astype(float).between(0, 1).all()
        assert (f["total_amount"].astype(float) >= 0).all()
        assert f["payment_method"].isin(["credit card", "debit card", "paypal", "cash"]).all()
        assert f["customer_id"].str.len().le(100).all() and f["customer_id"].str.len().gt(0).all()
        assert f["sale_date"].notna().all() and f["sale_time"].notna().all()


def test_generated_file_is_valid_except_its_bad_rows(tmp_path: Path) -> None:
    g = generate(tmp_path / "g.csv", 500, bad_rows=len(BAD_KINDS), seed=3)
    result = run(g.path.read_text())
    assert {r.line: r.code for r in result.rejects} == g.bad
    assert len(result.frame) == 500 - len(BAD_KINDS)


def test_generator_is_deterministic_and_realistic() -> None:
    a, b = make_frame(200, seed=1), make_frame(200, seed=1)
    assert a.equals(b)
    assert a["timestamp"].is_monotonic_increasing
    assert a["transaction_id"].is_unique and a["customer_id"].nunique() <= 5
