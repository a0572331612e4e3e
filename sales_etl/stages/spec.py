"""The dataset spec types: the columns of a CSV file and what they land in (``Column``), and
a dataset's table, key, write mode and columns (``Dataset``). Plain frozen data that every
stage takes; the TOML reader that builds and validates them is ``datasets.reader``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sales_etl.core.reasons import RowCode, row_code
from sales_etl.stages.rules import BY_KEY

DEFAULT_FORMATS = {"timestamp": "%Y-%m-%d %H:%M:%S", "date": "%Y-%m-%d"}


@dataclass(frozen=True)
class Column:
    """One CSV column: its name, type and SQL column(s), and the keys of its TOML table as
    written (``options``, every one declared and checked in ``rules.RULES``)."""

    name: str  # CSV header name
    type: str
    sql: tuple[str, ...] = ()  # SQL column(s): one, or two for a split timestamp
    options: tuple[tuple[str, Any], ...] = ()  # (key, value), lists as tuples

    def get(self, key: str, default: Any = None) -> Any:
        """The value of a rule's key, or ``default`` when the column does not set it."""
        if key not in BY_KEY:
            raise KeyError(f"{key!r} is not a column rule (rules.RULES)")
        return next((v for k, v in self.options if k == key), default)

    @property
    def required(self) -> bool:
        return bool(self.get("required", False))

    @property
    def sensitive(self) -> bool:
        return bool(self.get("sensitive", False))

    @property
    def normalize(self) -> str:
        return str(self.get("normalize", "trim"))

    @property
    def default(self) -> str | None:
        return self.get("default")

    @property
    def derive(self) -> str | None:
        return self.get("derive")

    @property
    def tolerance(self) -> float:
        return float(self.get("tolerance", 0.0))

    @property
    def mismatch(self) -> RowCode:
        """The reason code of a stated derived value too far off (declared by the dataset)."""
        return row_code(self.get("mismatch", "derived_mismatch"))

    @property
    def scale(self) -> int | None:
        return self.get("scale")

    @property
    def fmt(self) -> str | None:
        """The strptime format of a timestamp or date column."""
        return self.get("format", DEFAULT_FORMATS.get(self.type))

    @property
    def hash_column(self) -> str:
        return f"{self.sql[0]}_hash"


@dataclass(frozen=True)
class Dataset:
    name: str
    version: int
    table: str
    business_key: tuple[str, ...]
    write_mode: str
    columns: tuple[Column, ...]
    row_id: str  # the table's surrogate key (key rotation walks the table by it)
    source: str  # the file it was read from
    fingerprint: str  # sha256 of the spec file: changes when the rules change

    @property
    def required(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.required)

    @property
    def sensitive(self) -> tuple[Column, ...]:
        return tuple(c for c in self.columns if c.sensitive)

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    @property
    def sql_columns(self) -> tuple[str, ...]:
        """Target columns in load order: data columns, then the blind-index columns."""
        out: list[str] = []
        for c in self.columns:
            out.extend(c.sql)
        out.extend(c.hash_column for c in self.sensitive)
        return tuple(out)

    @property
    def key_sql(self) -> tuple[str, ...]:
        """The SQL columns of the business key: a sensitive key column is matched on its
        blind index (tokens differ at every encryption; the hash does not)."""
        return tuple(
            self.column(k).hash_column if self.column(k).sensitive else self.column(k).sql[0]
            for k in self.business_key
        )

    @property
    def key_plain(self) -> tuple[str, ...]:
        """The business key's SQL columns before encryption (to compare within a file)."""
        return tuple(self.column(k).sql[0] for k in self.business_key)
