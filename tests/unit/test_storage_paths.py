from datetime import datetime

import pytest

from sales_etl.stages.names import quote_meta, unquote_meta
from sales_etl.storage.container import route, safe_parts
from sales_etl.storage.moves import beside, candidates, version_tag


@pytest.mark.parametrize(
    ("name", "dataset", "rel"),
    [
        ("incoming/file.csv", "sales", "file.csv"),
        ("incoming/sales/file.csv", "sales", "file.csv"),
        ("incoming/customers/2025/10/file.csv", "customers", "2025/10/file.csv"),
        ("incoming/../../etc/passwd", "etc", "passwd"),
        ("incoming/./a/../b.csv", "a", "b.csv"),
        ("incoming/ventes été/ma file.csv", "ventes été", "ma file.csv"),
    ],
)
def test_route(name: str, dataset: str, rel: str) -> None:
    r = route(name)
    assert (r.dataset, r.rel) == (dataset, rel)


def test_destinations_never_escape_their_prefix() -> None:
    r = route("incoming/../../x/../y.csv")
    when = datetime(2025, 10, 9)
    for path in (r.processed(when), r.failed(), r.deadletter(), r.rejects("../run")):
        assert ".." not in safe_parts(path) and path.split("/")[0] in {
            "processed",
            "failed",
            "deadletter",
            "rejected",
        }
    assert r.processed(when).startswith("processed/x/2025/10/09/")


def test_metadata_is_ascii_and_round_trips() -> None:
    text = "ventes été/ma file.csv: line 3 — bad"
    quoted = quote_meta(text)
    assert quoted.isascii() and unquote_meta(quoted) == text
    assert len(quote_meta("é" * 2000, 900)) <= 900


def test_fallback_names_are_per_version_and_keep_the_extension() -> None:
    assert beside("failed/sales/X.csv", "8DC1") == "failed/sales/X~8DC1.csv"
    assert beside("failed/sales/X.csv.gz", "t") == "failed/sales/X.csv~t.gz"
    assert beside("failed/v1.2/X", "t") == "failed/v1.2/X~t"
    assert beside("failed/sales/.hidden", "t") == "failed/sales/.hidden~t"
    assert version_tag('"0x8DC5A1B2C3D4E5F"') == "8DC5A1B2C3D4E5F"
    first, second = candidates("p/X.csv", '"0x1"', "r"), candidates("p/X.csv", '"0x1"', "r")
    assert first == second == ["p/X.csv", "p/X~1.csv", "p/X~1-r.csv"]
    assert candidates("p/X.csv", '"0x2"', "r")[1] != first[1]


def test_each_run_has_its_own_rejects_name() -> None:
    r = route("incoming/sales/X.csv")
    assert r.rejects("a-1") != r.rejects("a-2")
    assert r.rejects("a-1") == "rejected/sales/X.csv.a-1.rejects.csv"
    assert "/" not in r.rejects("../../x/y").removeprefix("rejected/sales/")
