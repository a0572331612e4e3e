"""verify-full through a CA bundle built from the roots shipped in the package: libpq reads
the whole bundle (the shipped roots and a local CA side by side), trusts exactly what is in it,
Azure itself cannot be reached
from here: the local server's CA stands in for DigiCert/Microsoft in the bundle."""

from __future__ import annotations

from pathlib import Path

import psycopg2
import pytest

from sales_etl.config.connections import AZURE_PG_ROOTS
from sales_etl.config.settings import Settings, load_settings
from sales_etl_dev.devstack import StackState


def _connect(settings: Settings, rootcert: str) -> list[tuple[object, ...]]:
    kwargs = settings.require_database().connect_kwargs()
    kwargs.update(sslmode="verify-full", sslrootcert=rootcert)
    with psycopg2.connect(**kwargs) as conn, conn.cursor() as cur:
        cur.execute("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        rows = cur.fetchall()
    conn.close()
    return rows


def test_verify_full_through_the_shipped_roots_plus_a_ca(
    tls: StackState, settings: Settings, tmp_path: Path
) -> None:
    assert tls.ca_file is not None  # a TLS stack has its CA
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(AZURE_PG_ROOTS.read_bytes() + b"\n" + Path(tls.ca_file).read_bytes())
    assert _connect(settings, str(bundle)) == [(True,)]
    # The same bundle given through the setting, as an operator would.
    env = {**tls.env(), "POSTGRES_SSLMODE": "verify-full", "POSTGRES_SSLROOTCERT": str(bundle)}
    db = load_settings(env).require_database()
    assert db.sslrootcert == str(bundle)
    with psycopg2.connect(**db.connect_kwargs()) as conn:
        assert conn.info.ssl_in_use
    conn.close()


def test_the_shipped_roots_alone_do_not_trust_another_ca(tls: StackState, settings: Settings) -> None:
    with pytest.raises(psycopg2.OperationalError, match="certificate verify failed"):
        _connect(settings, str(AZURE_PG_ROOTS))
