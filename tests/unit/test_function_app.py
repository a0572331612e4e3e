"""function_app.py as the genuine worker library indexes it (azure-functions-runtime's
worker init, in a fresh process as in Azure): the binding JSON the worker reports to the
host, and what settings read at import do to it. No service needed: indexing reads only
settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sales_etl.config.settings import project_root

# settings a developer's shell might carry into the test: each test states its own
_OURS = ("SALES_", "SWEEP_", "AZ_", "SalesStorage", "DATASETS_DIR", "AzureWebJobs")


def index(env: dict[str, str] | None = None) -> dict[str, Any]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    run = subprocess.run(
        [sys.executable, "-m", "sales_etl_dev.hostcall", "index"],
        cwd=project_root(),
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


def errors(result: dict[str, Any]) -> list[str]:
    return [r["message"] for r in result["logs"] if r["level"] in ("Error", "Critical")]


def test_the_worker_indexes_both_functions_with_their_binding_json() -> None:
    result = index()
    assert result["ok"] and errors(result) == []
    assert result["functions"] == {
        "load_blob": [
            {
                "direction": "IN",
                "type": "blobTrigger",
                "name": "client",
                "path": "sales/incoming/{name}",
                "connection": "SalesStorage",
                "source": "LogsAndContainerScan",
                # SDK-type binding: the host sends a reference, never the blob's bytes
                "properties": {"SupportsDeferredBinding": True},
            }
        ],
        "retry_sweep": [
            {
                "direction": "IN",
                "type": "timerTrigger",
                "name": "timer",
                "schedule": "0 */10 * * * *",
                "runOnStartup": False,
                "useMonitor": True,
            }
        ],
    }
    indexed = [r for r in result["logs"] if "Successfully indexed function app" in r["message"]]
    assert len(indexed) == 1 and json.loads(indexed[0]["message"])["function_count"] == 2


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "00:10:00", "%SWEEP_CRON%"])
def test_schedules_the_host_accepts_index_both_functions(schedule: str) -> None:
    result = index({"SWEEP_SCHEDULE": schedule, "SWEEP_CRON": "0 0 * * * *"})
    assert set(result["functions"]) == {"load_blob", "retry_sweep"}, errors(result)
    expected = "0 0 * * * *" if schedule.startswith("%") else schedule
    assert result["functions"]["retry_sweep"][0]["schedule"] == expected


def test_a_refused_schedule_leaves_the_blob_trigger_working() -> None:
    result = index({"SWEEP_SCHEDULE": "every ten minutes"})
    assert result["ok"] and set(result["functions"]) == {"load_blob"}
    [error] = errors(result)
    assert "SWEEP_SCHEDULE" in error and "retry_sweep is not registered" in error


def test_an_invalid_trigger_source_leaves_the_sweep_working() -> None:
    result = index({"SALES_TRIGGER_SOURCE": "webhook"})
    assert result["ok"] and set(result["functions"]) == {"retry_sweep"}
    [error] = errors(result)
    assert "SALES_TRIGGER_SOURCE" in error and "load_blob is not registered" in error


def test_container_expressions_are_resolved_and_bad_names_reported_at_start() -> None:
    resolved = index({"SALES_CONTAINER": "%CONT%", "CONT": "landing"})
    assert resolved["functions"]["load_blob"][0]["path"] == "landing/incoming/{name}"
    # the host looks app settings up in any case (IConfiguration): so does the app
    any_case = index({"SALES_CONTAINER": "%cont%", "CONT": "landing"})
    assert any_case["functions"]["load_blob"][0]["path"] == "landing/incoming/{name}"
    bad = index({"SALES_CONTAINER": "Sales_Data"})
    assert set(bad["functions"]) == {"retry_sweep"}
    [error] = errors(bad)
    assert "SALES_CONTAINER" in error and "'Sales_Data' is not a valid container name" in error


_KV = "@Microsoft.KeyVault(SecretUri=https://vault.vault.azure.net/secrets/container/)"


def test_an_unresolved_reference_in_the_container_refuses_the_trigger_and_says_so() -> None:
    """Not a silent fall-back to the default container (or to AZ_CONTAINER_NAME) while the
    log says the function is not registered."""
    for env in (
        {"SALES_CONTAINER": _KV},
        {"SALES_CONTAINER": _KV, "AZ_CONTAINER_NAME": "other"},
        {"SALES_CONTAINER": "%CONT%", "CONT": _KV},
    ):
        result = index(env)
        assert result["ok"] and set(result["functions"]) == {"retry_sweep"}, (env, result)
        [error] = errors(result)
        assert "SALES_CONTAINER" in error and "unresolved" in error, error
        assert "load_blob is not registered" in error


def test_eventgrid_source_follows_the_setting() -> None:
    result = index({"SALES_TRIGGER_SOURCE": "eventgrid"})
    assert result["functions"]["load_blob"][0]["source"] == "EventGrid"


def test_a_broken_dataset_is_reported_at_start_and_indexing_goes_on(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text('name = "broken"\nbusiness_key = ["a"]\n')
    result = index(
        {
            "DATASETS_DIR": str(tmp_path),
            "SalesStorage": "UseDevelopmentStorage=true",
            "POSTGRES_HOST": "localhost",
            "POSTGRES_USER": "u",
            "POSTGRES_DB": "d",
        }
    )
    assert set(result["functions"]) == {"load_blob", "retry_sweep"}
    [error] = errors(result)
    assert "dataset broken is broken" in error and "broken.toml" in error


def test_an_exception_at_import_would_remove_every_function(tmp_path: Path) -> None:
    """Why nothing read at import may raise: the worker reports a failed init."""
    app = tmp_path / "function_app.py"
    app.write_text(
        "import azure.functions as func\napp = func.FunctionApp()\n"
        "raise RuntimeError('a setting could not be read')\n"
    )
    result = index({"SALES_ETL_HOME": str(tmp_path)})
    assert not result["ok"] and result["functions"] == {}
    assert "a setting could not be read" in result["error"]
