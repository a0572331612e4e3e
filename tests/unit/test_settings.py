import base64

import pytest

from sales_etl.config.settings import Secret, load_settings, read_bindings
from sales_etl.core.errors import ConfigError

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
BASE = {
    "SalesStorage": "DefaultEndpointsProtocol=http;AccountName=a;AccountKey=c2VjcmV0;BlobEndpoint=http://127.0.0.1:1/a;",
    "POSTGRES_HOST": "localhost",
    "POSTGRES_USER": "u",
    "POSTGRES_DB": "d",
    "POSTGRES_PASSWORD": "hunter2-password",
    "FERNET_KEYS": KEY,
    "BLIND_INDEX_KEY": KEY,
}


def test_defaults_and_secrets_never_show() -> None:
    s = load_settings(BASE)
    assert s.container == "sales" and s.chunk_rows == 10_000
    assert s.retry.max_attempts == 5 and s.sweep_schedule == "0 */10 * * * *"
    text = repr(s)
    for secret in ("hunter2-password", KEY, "c2VjcmV0"):
        assert secret not in text
    assert s.require_database().describe() == "u@localhost:5432/d (sslmode=prefer)"


def test_all_problems_are_named_in_one_error() -> None:
    env = {
        **BASE,
        "POSTGRES_PORT": "x",
        "CHUNK_SIZE": "0",
        "FERNET_KEYS": "short",
        "SALES_CONTAINER": "Bad_Name",
    }
    with pytest.raises(ConfigError) as err:
        load_settings(env)
    for name in ("POSTGRES_PORT", "CHUNK_SIZE", "FERNET_KEYS", "SALES_CONTAINER"):
        assert name in err.value.message
    assert "short" not in err.value.message  # a bad key is not echoed


def test_original_names_that_the_trigger_can_read_still_work() -> None:
    env = {k: v for k, v in BASE.items() if k != "FERNET_KEYS"}
    env |= {"FERNET_KEY": KEY, "AZ_CONTAINER_NAME": "mycontainer"}
    s = load_settings(env)
    assert s.container == "mycontainer" and len(s.fernet_keys) == 1 and s.storage is not None


def test_az_connection_string_alone_is_refused_because_the_trigger_cannot_read_it() -> None:
    env = {k: v for k, v in BASE.items() if k != "SalesStorage"}
    with pytest.raises(ConfigError, match="AZ_CONNECTION_STRING: no longer read") as err:
        load_settings({**env, "AZ_CONNECTION_STRING": BASE["SalesStorage"]})
    assert "SalesStorage" in err.value.message and "c2VjcmV0" not in err.value.message


def test_remote_host_without_tls_is_refused_unless_allowed() -> None:
    env = {**BASE, "POSTGRES_HOST": "db.example.com", "POSTGRES_SSLMODE": "disable"}
    with pytest.raises(ConfigError, match="POSTGRES_ALLOW_INSECURE"):
        load_settings(env)
    assert load_settings({**env, "POSTGRES_ALLOW_INSECURE": "true"}).database is not None
    remote = load_settings({**BASE, "POSTGRES_HOST": "db.example.com"})
    assert remote.require_database().sslmode == "verify-full"


def test_identity_based_storage() -> None:
    env = {k: v for k, v in BASE.items() if k != "SalesStorage"}
    env |= {
        "SalesStorage__blobServiceUri": "https://acct.blob.core.windows.net",
        "SalesStorage__queueServiceUri": "https://acct.queue.core.windows.net",
        "SalesStorage__credential": "managedidentity",
        "SalesStorage__clientId": "abc",
    }
    storage = load_settings(env).require_storage()
    assert storage.uses_identity and storage.client_id == "abc" and storage.connection_string is None


def test_missing_groups_are_named_when_needed() -> None:
    s = load_settings({})
    with pytest.raises(ConfigError, match="POSTGRES_HOST"):
        s.require_database()
    with pytest.raises(ConfigError, match="SalesStorage"):
        s.require_storage()
    with pytest.raises(ConfigError, match="FERNET_KEYS"):
        s.require_keys()


def test_bindings_read_alone() -> None:
    b = read_bindings({})
    assert (b.container, b.source, b.schedule, b.problems) == (
        "sales",
        "LogsAndContainerScan",
        "0 */10 * * * *",
        (),
    )
    assert read_bindings({"SALES_TRIGGER_SOURCE": "EventGrid"}).source == "EventGrid"
    bad = read_bindings({"SALES_TRIGGER_SOURCE": "webhook"})
    assert bad.container is None and bad.source is None  # only the blob trigger is left out
    assert bad.schedule == "0 */10 * * * *"
    assert [p.split(":")[0] for p in bad.problems] == ["SALES_TRIGGER_SOURCE"]


def test_fallback_only_when_nothing_is_configured() -> None:
    assert load_settings({}, fallback=BASE).database is not None
    only = load_settings({"POSTGRES_HOST": "h", "POSTGRES_USER": "x", "POSTGRES_DB": "y"}, fallback=BASE)
    assert only.storage is None  # a configured environment is never mixed with the dev stack


def test_secret_equality_and_repr() -> None:
    assert Secret("a") == Secret("a") and "a" not in f"{Secret('a')}"


def test_a_refused_binding_setting_does_not_fail_the_other_function() -> None:
    """A bad SWEEP_SCHEDULE leaves out retry_sweep only: load_blob's invocations (which
    load every setting) keep working; likewise a bad trigger source for the sweep."""
    s = load_settings({**BASE, "SWEEP_SCHEDULE": "every ten minutes"})
    assert s.storage is not None
    assert read_bindings({**BASE, "SWEEP_SCHEDULE": "every ten minutes"}).schedule is None
    assert load_settings({**BASE, "SALES_TRIGGER_SOURCE": "webhook"}).database is not None


def test_a_key_pasted_into_postgres_auth_is_not_echoed_even_lower_cased() -> None:
    # The value is checked lower-cased; shown lower-cased, a key no longer looks like one
    # (no upper case) and was echoed, nearly whole. It is shown (or hidden) as given.
    pasted = "Zx9aB3kLmN0pQrS7tUvWxYz12345AbCdEf"
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "POSTGRES_AUTH": pasted})
    text = str(err.value)
    assert "POSTGRES_AUTH" in text and "not shown" in text
    assert pasted.lower() not in text and pasted not in text
    with pytest.raises(ConfigError) as err:
        load_settings({**BASE, "POSTGRES_AUTH": "Kerberos"})
    assert "POSTGRES_AUTH: 'Kerberos' must be 'password' or 'entra'" in str(err.value)
