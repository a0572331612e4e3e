from datetime import datetime

import pytest

from sales_etl.storage import quote_meta, route, safe_parts, unquote_meta


@pytest.mark.parametrize(("name", "dataset", "rel"), [
    ("incoming/file.csv", "sales", "file.csv"),
    ("incoming/sales/file.csv", "sales", "file.csv"),
    ("incoming/customers/2025/10/file.csv", "customers", "2025/10/file.csv"),
    ("incoming/../../etc/passwd", "etc", "passwd"),
    ("incoming/./a/../b.csv", "a", "b.csv"),
    ("incoming/ventes été/ma file.csv", "ventes été", "ma file.csv"),
])
def test_route(name: str, dataset: str, rel: str) -> None:
    r = route(name)
    assert (r.dataset, r.rel) == (dataset, rel)


def test_destinations_never_escape_their_prefix() -> None:
    r = route("incoming/../../x/../y.csv")
    when = datetime(2025, 10, 9)
    for path in (r.processed(when), r.failed(), r.deadletter(), r.rejects("../run")):
        assert ".." not in safe_parts(path) and path.split("/")[0] in {
            "processed", "failed", "deadletter", "rejected"}
    assert r.processed(when).startswith("processed/x/2025/10/09/")


def test_metadata_is_ascii_and_round_trips() -> None:
    text = "ventes été/ma file.csv: line 3 — bad"
    quoted = quote_meta(text)
    assert quoted.isascii() and unquote_meta(quoted) == text
    assert len(quote_meta("é" * 2000, 900)) <= 900
