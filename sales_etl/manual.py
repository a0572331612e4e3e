"""``sales-etl process``: the manual trigger. Resolves the name an operator typed or pasted,
refuses a blob that does not exist (exit status 1, no ledger row: nothing was attempted),
then processes it exactly as the blob trigger does."""

from __future__ import annotations

from azure.core.exceptions import ResourceNotFoundError

from . import pipeline, preflight, storage
from .blobpath import incoming_blob
from .errors import DataError
from .ledger import RunRecord
from .settings import Settings


def process(settings: Settings, text: str) -> RunRecord:
    name = incoming_blob(text, settings.container)
    preflight.check_storage(settings.require_storage())
    blob = storage.container_client(settings).get_blob_client(name)
    try:
        blob.get_blob_properties()
    except ResourceNotFoundError:
        raise DataError(f"{settings.container}/{name}: not found (was it uploaded? "
                        "`sales-etl upload FILE` prints the path to give)",
                        code="not_found") from None
    return pipeline.process_blob(blob, settings, trigger="cli")
