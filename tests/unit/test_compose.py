"""docker-compose.yml: valid for a compose implementation, and consistent with the
settings the app reads (there is no Docker engine here to run it)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from sales_etl.config.settings import load_settings, project_root

COMPOSE = project_root() / "docker-compose.yml"
KEY = base64.urlsafe_b64encode(b"k" * 32).decode()
FAKE_ENV = {
    "POSTGRES_ADMIN_PASSWORD": "p1",
    "POSTGRES_LOADER_PASSWORD": "p2",
    "AZURITE_ACCOUNT_KEY": "a2V5",
    "FERNET_KEYS": KEY,
    "BLIND_INDEX_KEY": KEY,
}


def spec() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_validates_without_an_engine(tmp_path: Path) -> None:
    tool = shutil.which("docker-compose")
    if tool is None:
        if os.environ.get("CI"):
            pytest.fail("docker-compose is missing: make test installs it with apt-get")
        pytest.skip("docker-compose not installed (apt-get install --no-install-recommends docker-compose)")
    result = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"],
        cwd=project_root(),
        env={**os.environ, **FAKE_ENV},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_services_and_start_order() -> None:
    services = spec()["services"]
    assert set(services) == {"postgres", "flyway", "db-roles", "azurite", "functions"}
    assert services["flyway"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["db-roles"]["depends_on"]["flyway"]["condition"] == ("service_completed_successfully")
    assert services["functions"]["depends_on"] == {
        "db-roles": {"condition": "service_completed_successfully"},
        "azurite": {"condition": "service_healthy"},
    }
    for name in ("postgres", "azurite"):
        assert "healthcheck" in services[name]
    assert "./certs/generated:/certs:ro" in services["postgres"]["volumes"]
    assert "./migrations:/flyway/sql:ro" in services["flyway"]["volumes"]
    assert "ssl=on" in " ".join(services["postgres"]["command"])
    assert "sslmode=verify-full" in services["flyway"]["command"]


def test_function_app_settings_match_what_the_app_reads() -> None:
    services = spec()["services"]
    env = {
        k: str(v).replace("${", "").replace("}", "") for k, v in services["functions"]["environment"].items()
    }
    for key, value in FAKE_ENV.items():
        env = {k: v.replace(key, value) for k, v in env.items()}
    env["POSTGRES_SSLROOTCERT"] = str(COMPOSE)  # a file that exists here, in place of /certs
    settings = load_settings(env)  # every setting is one the app knows and accepts
    db = settings.require_database()
    assert db.host == "postgres" and db.port == 5432 and db.sslmode == "verify-full"
    assert db.user == "sales_loader" and db.dbname == services["postgres"]["environment"]["POSTGRES_DB"]
    assert "5432:5432" in services["postgres"]["ports"]
    storage = settings.require_storage().connection_string
    assert storage is not None
    conn = storage.get()
    azurite_ports = {p.split(":")[1] for p in services["azurite"]["ports"]}
    assert "BlobEndpoint=http://azurite:10000/" in conn and "10000" in azurite_ports
    assert "QueueEndpoint=http://azurite:10001/" in conn and "10001" in azurite_ports
    assert env["AzureWebJobsStorage"] == conn  # the host's storage is the same Azurite
    assert settings.container == "sales" and settings.trigger_source == "LogsAndContainerScan"


def test_postgres_refuses_plaintext_tcp() -> None:
    """The comment says plaintext TCP is refused: the server's own pg_hba.conf says so."""
    import re
    import shlex

    command = spec()["services"]["postgres"]["command"][0]
    words = shlex.split(command)
    hba_file = words[words.index("-c", words.index("postgres")) + 1 :]
    hba = next(w.split("=", 1)[1] for w in hba_file if w.startswith("hba_file="))
    match = re.search(r"printf '%s\\n' (.*?) > (\S+)", command)
    assert match is not None and match.group(2) == hba
    lines = shlex.split(match.group(1))
    assert "hostnossl all all all reject" in lines
    assert [line for line in lines if line.startswith("host ")] == []  # no TCP without TLS
    assert all(line.endswith("scram-sha-256") for line in lines if line.startswith("hostssl"))
