"""The blob names operators paste into ``sales-etl process``."""

import pytest

from sales_etl.core.errors import ConfigError
from sales_etl.storage.blobpath import incoming_blob


@pytest.mark.parametrize(
    "text",
    [
        "incoming/sales/x.csv",
        "sales/incoming/sales/x.csv",  # what `upload` prints
        "/incoming/sales/x.csv",
        " incoming/sales/x.csv\n",
        "http://127.0.0.1:10000/devstoreaccount1/sales/incoming/sales/x.csv",  # Azurite
        "https://acct.blob.core.windows.net/sales/incoming/sales/x.csv",  # Azure
        "https://acct.blob.core.windows.net/sales/incoming/sales/%78.csv",  # URL-encoded
    ],
)
def test_accepted_forms(text: str) -> None:
    assert incoming_blob(text, "sales") == "incoming/sales/x.csv"


def test_file_directly_under_incoming() -> None:
    assert incoming_blob("sales/incoming/x.csv", "sales") == "incoming/x.csv"


def test_a_container_named_like_the_folder() -> None:
    assert incoming_blob("incoming/incoming/x.csv", "incoming") == "incoming/incoming/x.csv"


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("x.csv", "expected incoming/[<dataset>/]<file>"),
        ("sales/x.csv", "expected incoming/[<dataset>/]<file>"),
        ("", "empty"),
        ("incoming/", "not a blob path under incoming/"),
        ("incoming", "not a blob path under incoming/"),
        ("processed/sales/2025/01/01/x.csv", "not processed/"),
        ("failed/sales/x.csv", "sales-etl requeue failed/sales/x.csv"),
        ("sales/deadletter/sales/x.csv", "sales-etl requeue deadletter/sales/x.csv"),
        ("incoming/../failed/x.csv", "'..' path segments"),
        ("incoming//x.csv", "path segments"),
        ("https://acct.blob.core.windows.net/other/incoming/x.csv", "not in container 'sales'"),
        ("other/incoming/x.csv", "not a blob path under incoming/"),
    ],
)
def test_refused_with_the_expected_form(text: str, says: str) -> None:
    with pytest.raises(ConfigError) as caught:
        incoming_blob(text, "sales")
    assert says in caught.value.message
    assert "\n" not in caught.value.message
