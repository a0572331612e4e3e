"""What the host accepts in binding settings: schedules, %NAME% expressions, container
names, connections (hostsettings.py, read through settings.read_bindings/load_settings)."""

import pytest

from sales_etl.config import hostsettings
from sales_etl.config.hostsettings import SettingError
from sales_etl.config.settings import host_connections, load_settings, read_bindings
from sales_etl.core.errors import ConfigError

CONN = "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:1/a;"


@pytest.mark.parametrize(
    "schedule",
    [
        "0 */10 * * * *",
        "*/5 * * * *",
        "0 30 9 * * MON-FRI",
        "0 0 1 1,7 *",
        "0 0 * * SUN",
        "5-10/2 0 0 1 JAN *",
        "00:10:00",
        "1.00:00:00",
        "23:59",
        "0 0 */2 * * 0-6",
    ],
)
def test_schedules_the_host_accepts(schedule: str) -> None:
    assert hostsettings.schedule_kind(schedule) in ("ncrontab", "timespan")
    b = read_bindings({"SWEEP_SCHEDULE": schedule})
    assert b.schedule == schedule and b.problems == ()


@pytest.mark.parametrize(
    "schedule",
    [
        "every ten minutes",
        "* * * *",
        "0 0 0 0 0 0 0",
        "61 * * * * *",
        "0 0 24 * * *",
        "0 0 0 32 * *",
        "0 0 0 * 13 *",
        "0 0 0 * * 7",
        "*/0 * * * * *",
        "0 0 0 * FOO *",
        "24:00:00",
        "00:00:00",
        "1-2-3 * * * *",
    ],
)
def test_schedules_the_host_refuses_leave_out_only_the_timer(schedule: str) -> None:
    with pytest.raises(SettingError):
        hostsettings.schedule_kind(schedule)
    b = read_bindings({"SWEEP_SCHEDULE": schedule})
    assert b.schedule is None and b.container == "sales"  # the blob trigger stays
    assert len(b.problems) == 1 and b.problems[0].startswith("SWEEP_SCHEDULE: ")


def test_percent_expressions_resolve_as_the_host_does() -> None:
    env = {
        "SALES_CONTAINER": "%CONT%",
        "CONT": "landing",
        "SWEEP_SCHEDULE": "%SCHED%",
        "SCHED": "*/5 * * * *",
        "SALES_TRIGGER_SOURCE": "%SRC%",
        "SRC": "eventgrid",
    }
    b = read_bindings(env)
    assert (b.container, b.schedule, b.source, b.problems) == ("landing", "*/5 * * * *", "EventGrid", ())
    assert load_settings({**env, "SalesStorage": CONN}).container == "landing"
    assert hostsettings.resolve("pre-%A%-%B%", {"A": "x", "B": "y"}) == "pre-x-y"


def test_an_unset_expression_names_the_missing_setting() -> None:
    b = read_bindings({"SALES_CONTAINER": "%NOPE%"})
    assert b.container is None and b.schedule is not None
    assert b.problems == ("SALES_CONTAINER: %NOPE% names app setting NOPE, which is not set",)


@pytest.mark.parametrize("name", ["Sales_Data", "ab", "a" * 64, "-abc", "ab--c", "abc-"])
def test_invalid_container_names_leave_out_only_the_blob_trigger(name: str) -> None:
    b = read_bindings({"SALES_CONTAINER": name})
    assert b.container is None and b.schedule == "0 */10 * * * *"
    assert b.problems[0].startswith("SALES_CONTAINER: ") and "not a valid container name" in b.problems[0]
    resolved = read_bindings({"SALES_CONTAINER": "%C%", "C": name})
    assert resolved.container is None  # checked after resolution too


def test_identity_connection_needs_blob_and_queue_uris() -> None:
    base = {"POSTGRES_HOST": "localhost", "POSTGRES_USER": "u", "POSTGRES_DB": "d"}
    with pytest.raises(ConfigError, match="SalesStorage__queueServiceUri"):
        load_settings({**base, "SalesStorage__serviceUri": "https://a.blob.core.windows.net"})
    with pytest.raises(ConfigError, match="SalesStorage__queueServiceUri"):
        load_settings({**base, "SalesStorage__blobServiceUri": "https://a.blob.core.windows.net"})
    s = load_settings(
        {
            **base,
            "SalesStorage__blobServiceUri": "https://a.blob.core.windows.net",
            "SalesStorage__queueServiceUri": "https://a.queue.core.windows.net",
        }
    )
    assert s.storage is not None and s.storage.uses_identity
    assert s.storage.service_uri == "https://a.blob.core.windows.net"


def test_host_connections_as_the_host_resolves_them() -> None:
    ok = dict(
        (n, (good, text))
        for n, good, text in host_connections({"SalesStorage": CONN, "AzureWebJobsStorage": CONN})
    )
    assert ok["SalesStorage"][0] and ok["AzureWebJobsStorage"][0]
    only_alias = dict((n, (good, text)) for n, good, text in host_connections({"AZ_CONNECTION_STRING": CONN}))
    assert only_alias["SalesStorage"] == (False, only_alias["SalesStorage"][1])
    assert "not set" in only_alias["SalesStorage"][1]
    assert not only_alias["AzureWebJobsStorage"][0]
    prefixed = dict(
        (n, (good, text))
        for n, good, text in host_connections(
            {"AzureWebJobsSalesStorage": CONN, "AzureWebJobsStorage__accountName": "a"}
        )
    )
    assert not prefixed["SalesStorage"][0] and "blob extension" in prefixed["SalesStorage"][1]
    assert prefixed["AzureWebJobsStorage"][0]
    for _, _, text in host_connections({"SalesStorage": CONN}):
        assert "c2VjcmV0" not in text  # the key is never echoed


_IDENTITY = {
    "SalesStorage__blobServiceUri": "https://a.blob.core.windows.net",
    "SalesStorage__queueServiceUri": "https://a.queue.core.windows.net",
    "AzureWebJobsStorage__accountName": "a",
}


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        # the blob extension takes SalesStorage whenever it exists, even empty
        ({"SalesStorage": ""}, "set but empty"),
        ({"SalesStorage": "  "}, "set but empty"),
        # the extension prefers __serviceUri, the host's trigger reads __blobServiceUri
        ({"SalesStorage__serviceUri": "https://b.blob.core.windows.net"}, "differ"),
        # the extension uses the client id only with __credential=managedidentity
        ({"SalesStorage__clientId": "00000000-0000-0000-0000-000000000001"}, "__credential"),
    ],
)
def test_identity_settings_the_blob_extension_reads_differently_are_refused(
    extra: dict[str, str], words: str
) -> None:
    env = {**_IDENTITY, **extra}
    checks = {n: (ok, text) for n, ok, text in host_connections(env)}
    assert not checks["SalesStorage"][0] and words in checks["SalesStorage"][1]
    with pytest.raises(ConfigError, match="SalesStorage"):
        load_settings({**env, "FERNET_KEYS": "x"})


def test_identity_settings_both_read_alike_are_accepted() -> None:
    same = {
        **_IDENTITY,
        "SalesStorage__serviceUri": "https://a.blob.core.windows.net/",
        "SalesStorage__credential": "managedidentity",
        "SalesStorage__clientId": "00000000-0000-0000-0000-000000000001",
    }
    assert all(ok for _, ok, _ in host_connections(same)), host_connections(same)


@pytest.mark.parametrize("value", [CONN + "\n", CONN + " ", CONN.replace(";", ";;", 1)])
def test_a_connection_string_the_blob_extension_cannot_parse_is_refused(value: str) -> None:
    """The package strips and skips empty parts; the extension passes the value as is to
    BlobServiceClient.from_connection_string, which raises 'blank or malformed'."""
    from azure.storage.blob import BlobServiceClient

    with pytest.raises(ValueError, match="malformed"):
        BlobServiceClient.from_connection_string(value)
    checks = {n: (ok, text) for n, ok, text in host_connections({"SalesStorage": value})}
    assert not checks["SalesStorage"][0] and "cannot parse" in checks["SalesStorage"][1]
    assert "c2VjcmV0" not in checks["SalesStorage"][1]
    BlobServiceClient.from_connection_string(" " + CONN)  # what it does accept stays accepted
    assert host_connections({"SalesStorage": " " + CONN})[0][1]


@pytest.mark.parametrize(
    "prefixed",
    [
        {"AzureWebJobsSalesStorage": CONN.replace("AccountName=a", "AccountName=other")},
        {
            "AzureWebJobsSalesStorage__blobServiceUri": "https://other.blob.core.windows.net",
            "AzureWebJobsSalesStorage__queueServiceUri": "https://other.queue.core.windows.net",
        },
    ],
)
def test_a_prefixed_connection_beside_the_plain_one_is_refused(prefixed: dict[str, str]) -> None:
    """The host's storage extension reads AzureWebJobsSalesStorage before SalesStorage
    (GetWebJobsConnectionStringSection), the blob extension and the package SalesStorage."""
    checks = {n: (ok, text) for n, ok, text in host_connections({"SalesStorage": CONN, **prefixed})}
    assert not checks["SalesStorage"][0]
    assert "reads AzureWebJobsSalesStorage before SalesStorage" in checks["SalesStorage"][1]
    assert "c2VjcmV0" not in checks["SalesStorage"][1]
    # the same connection string under both names is read alike
    same = {n: ok for n, ok, _ in host_connections({"SalesStorage": CONN, "AzureWebJobsSalesStorage": CONN})}
    assert same["SalesStorage"]
