"""``sales-etl process``: the manual trigger. Resolves the name an operator typed or pasted,
refuses a blob that does not exist (exit status 1, no ledger row: nothing was attempted),
then processes it exactly as the blob trigger does."""

from __future__ import annotations

import shlex
from typing import Any

from sales_etl.config.settings import Settings
from sales_etl.core.errors import DataError, EtlError
from sales_etl.db import ledger
from sales_etl.db.connection import connect
from sales_etl.db.ledger import RunRecord
from sales_etl.flow import pipeline
from sales_etl.storage import container as storage
from sales_etl.storage import preflight
from sales_etl.storage.blobpath import incoming_blob


def process(settings: Settings, text: str) -> RunRecord:
    name = incoming_blob(text, settings.container)
    preflight.check_storage(settings.require_storage())
    blob = storage.container_client(settings).get_blob_client(name)
    if storage.properties(blob) is None:
        last = _last_run(settings, name)
        if last is not None:  # it was there: processed, failed or moved meanwhile
            raise DataError(
                f"{settings.container}/{name}: not in incoming/ any more (its last run, "
                f"{last['run_id']}, is {last['status']}; all of them: sales-etl runs --blob "
                f"{shlex.quote(name)})",
                code="not_found",
            ) from None
        raise DataError(
            f"{settings.container}/{name}: not found (was it uploaded? "
            "`sales-etl upload FILE` prints the path to give)",
            code="not_found",
        ) from None
    return pipeline.process_blob(blob, settings, trigger="cli")


def _last_run(settings: Settings, name: str) -> dict[str, Any] | None:
    """The newest ledger row of exactly this blob path, if the ledger can say."""
    try:
        conn = connect(settings.require_database())
    except EtlError:
        return None
    try:
        rows = ledger.recent(conn, limit=50, blob=name)
    except Exception:  # only a better message is at stake
        return None
    finally:
        conn.close()
    return next((r for r in rows if r["blob_path"] == name), None)


def as_recorded(settings: Settings, rec: RunRecord) -> dict[str, Any]:
    """The attempt as the ledger holds it (run_id, seconds: what `runs` shows), or as the
    invocation saw it when no row was written or the ledger cannot be read."""
    if rec.run_id is not None:
        return rec.as_dict()
    try:
        conn = connect(settings.require_database())
    except EtlError:
        return rec.as_dict()
    try:
        rows = ledger.recent(conn, limit=20, blob=rec.blob_path)
    finally:
        conn.close()
    return next((r for r in rows if r["run_uuid"] == rec.run_uuid), rec.as_dict())
