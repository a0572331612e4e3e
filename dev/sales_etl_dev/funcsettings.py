"""``sales-etl dev func-settings``: the ``local.settings.json`` that Core Tools
(``func start``) reads, for the running local stack, so that ``make dev-up``, this command
and ``func start`` are the whole recipe. The file holds the stack's generated secrets: it
is git-ignored and written readable by its owner only."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from sales_etl.config.settings import DEFAULT_SWEEP_SCHEDULE

from .devstack import StackState

# the schema owner's credentials are for migrations and operators, not for the app
_NOT_FOR_THE_APP = ("POSTGRES_ADMIN_USER", "POSTGRES_ADMIN_PASSWORD")


def local_settings(state: StackState) -> dict[str, Any]:
    """Core Tools' format: {"IsEncrypted": false, "Values": {name: string}}."""
    values = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "SALES_TRIGGER_SOURCE": "polling",  # Azurite has no Event Grid
        "SWEEP_SCHEDULE": DEFAULT_SWEEP_SCHEDULE,
    }
    values |= {k: v for k, v in state.env().items() if k not in _NOT_FOR_THE_APP}
    return {"IsEncrypted": False, "Values": {k: str(v) for k, v in values.items()}}


def write(state: StackState, path: Path, *, force: bool = False) -> Path:
    if path.exists() and not force:
        raise FileExistsError(f"{path} exists (pass --force to replace it)")
    text = json.dumps(local_settings(state), indent=2) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.write(text)
    path.chmod(0o600)
    return path
