"""PostgreSQL over TLS with verify-full against the generated CA."""

from __future__ import annotations

import psycopg2
import pytest

from sales_etl.config.settings import Settings
from sales_etl_dev.devstack import StackState

from .conftest import query


def test_connections_are_encrypted_and_verified(tls: StackState, settings: Settings) -> None:
    db = settings.require_database()
    assert (db.sslmode, db.sslrootcert) == ("verify-full", tls.ca_file)
    assert query(settings, "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()") == [(True,)]


def test_wrong_host_name_is_refused(tls: StackState, settings: Settings) -> None:
    kwargs = settings.require_database().connect_kwargs()
    kwargs.update(host="db.wrong.example", hostaddr="127.0.0.1")
    with pytest.raises(psycopg2.OperationalError, match="does not match host name"):
        psycopg2.connect(**kwargs)


def test_plaintext_is_refused_by_the_server(tls: StackState, settings: Settings) -> None:
    kwargs = settings.require_database().connect_kwargs()
    kwargs.update(sslmode="disable")
    kwargs.pop("sslrootcert", None)
    with pytest.raises(psycopg2.OperationalError, match=r"no encryption|reject"):
        psycopg2.connect(**kwargs)
