"""The protector of a dataset under the configured keys: the stage (``stages.protect``) takes
its keys as arguments; this is where they come from the settings."""

from __future__ import annotations

from sales_etl.config.settings import Settings
from sales_etl.stages.protect import Protector
from sales_etl.stages.spec import Dataset


def make_protector(settings: Settings, dataset: Dataset) -> Protector | None:
    """The dataset's protector under the configured keys; None when it has no sensitive
    column (no keys needed). ConfigError when it has one and the keys are missing."""
    if not dataset.sensitive:
        return None
    fernet_keys, blind_key = settings.require_keys()
    return Protector(fernet_keys, blind_key)
