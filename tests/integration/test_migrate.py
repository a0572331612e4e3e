import shutil
from pathlib import Path

import pytest

from sales_etl.config.settings import Settings
from sales_etl.core.errors import ConfigError
from sales_etl.db import migrate


def test_second_run_is_a_no_op(settings: Settings) -> None:
    assert migrate.migrate(settings.require_admin_database()) == []
    assert migrate.pending(settings.require_admin_database()) == []


def test_changed_applied_migration_is_refused(settings: Settings, tmp_path: Path) -> None:
    for f in migrate.default_dir().glob("*.sql"):
        shutil.copy(f, tmp_path / f.name)
    first = sorted(tmp_path.glob("V1__*.sql"))[0]
    first.write_text(first.read_text() + "\n-- edited\n")
    with pytest.raises(ConfigError, match="was changed after it was applied"):
        migrate.migrate(settings.require_admin_database(), tmp_path)


def test_bad_names_are_refused(tmp_path: Path) -> None:
    (tmp_path / "init.sql").write_text("select 1")
    with pytest.raises(ConfigError, match=r"V<n>__<description>\.sql"):
        migrate.discover(tmp_path)
