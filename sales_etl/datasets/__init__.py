"""Dataset specifications: one TOML file per dataset (shipped here, or in DATASETS_DIR).

A spec names the CSV columns with their types and rules, the SQL table and columns they
land in, the business key and the sensitive columns. Every identifier is validated here,
so nothing from configuration reaches SQL text unchecked (and it is quoted there too).
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..expr import check as check_expression

SHIPPED_DIR = Path(__file__).resolve().parent
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
TYPES = ("text", "integer", "decimal", "enum", "timestamp", "date")
NORMALIZE = ("trim", "lower", "upper")
WRITE_MODES = ("insert", "upsert")
DEFAULT_DATASET = "sales"


@dataclass(frozen=True)
class Column:
    name: str  # CSV header name
    type: str
    required: bool = False
    sql: tuple[str, ...] = ()  # SQL column(s): one, or two for a split timestamp
    max_length: int | None = None
    pattern: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    scale: int | None = None
    default: str | None = None
    derive: str | None = None
    tolerance: float = 0.0
    values: tuple[str, ...] = ()
    normalize: str = "trim"
    fmt: str | None = None
    sensitive: bool = False

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
        return tuple(self.column(k).hash_column if self.column(k).sensitive
                     else self.column(k).sql[0] for k in self.business_key)

    @property
    def key_plain(self) -> tuple[str, ...]:
        """The business key's SQL columns before encryption (to compare within a file)."""
        return tuple(self.column(k).sql[0] for k in self.business_key)


def _fail(source: str, key: str, what: str) -> ConfigError:
    return ConfigError(f"dataset file {source}: {key}: {what}", code="dataset")


def _ident(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise _fail(source, key, f"{value!r} is not a valid SQL identifier "
                    "(lower-case letters, digits, underscore; at most 63)")
    return value


def _column(source: str, name: str, raw: dict[str, Any]) -> Column:
    where = f"columns.{name}"
    allowed = {"type", "required", "sql", "max_length", "pattern", "min", "max", "scale",
               "default", "derive", "tolerance", "values", "normalize", "format", "split",
               "sensitive"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(source, where, f"unknown key(s) {', '.join(unknown)}")
    ctype = raw.get("type")
    if ctype not in TYPES:
        raise _fail(source, f"{where}.type", f"{ctype!r} must be one of {', '.join(TYPES)}")
    if "split" in raw:
        split = raw["split"]
        if ctype != "timestamp" or not isinstance(split, list) or len(split) != 2:
            raise _fail(source, f"{where}.split", "only a timestamp splits, into [date, time]")
        sql = tuple(_ident(source, f"{where}.split", s) for s in split)
    else:
        sql = (_ident(source, f"{where}.sql", raw.get("sql", name)),)
    normalize = raw.get("normalize", "trim")
    if normalize not in NORMALIZE:
        raise _fail(source, f"{where}.normalize", f"{normalize!r} must be one of {NORMALIZE}")
    for key, kind in (("max_length", int), ("scale", int), ("min", (int, float)),
                      ("max", (int, float)), ("tolerance", (int, float)),
                      ("required", bool), ("sensitive", bool), ("default", str),
                      ("derive", str), ("format", str), ("pattern", str),
                      ("values", list)):
        if key in raw and not isinstance(raw[key], kind):
            raise _fail(source, f"{where}.{key}", f"{raw[key]!r} has the wrong type")
    pattern = raw.get("pattern")
    if pattern is not None:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise _fail(source, f"{where}.pattern", f"not a regular expression: {exc}") from exc
    values = raw.get("values", [])
    if ctype == "enum" and (not values or not all(isinstance(v, str) for v in values)):
        raise _fail(source, f"{where}.values", "an enum needs a list of allowed strings")
    if ctype == "decimal" and "scale" not in raw:
        raise _fail(source, f"{where}.scale", "a decimal needs its number of decimal places")
    if raw.get("sensitive") and ctype != "text":
        raise _fail(source, f"{where}.sensitive", "only text columns can be encrypted")
    return Column(
        name=name, type=ctype, required=raw.get("required", False), sql=sql,
        max_length=raw.get("max_length"), pattern=pattern,
        minimum=raw.get("min"), maximum=raw.get("max"), scale=raw.get("scale"),
        default=raw.get("default"), derive=raw.get("derive"),
        tolerance=float(raw.get("tolerance", 0.0)), values=tuple(values),
        normalize=normalize,
        fmt=raw.get("format", "%Y-%m-%d %H:%M:%S" if ctype == "timestamp" else
                    "%Y-%m-%d" if ctype == "date" else None),
        sensitive=raw.get("sensitive", False),
    )


def parse_dataset(path: Path) -> Dataset:
    """The dataset defined by ``path``; ConfigError (naming the file) for anything wrong in
    it, whatever the parsing runs into: a broken file must fail only its own dataset."""
    try:
        return _parse_dataset(path)
    except ConfigError:
        raise
    except Exception as exc:  # a value of a shape no check foresaw
        raise ConfigError(f"dataset file {path}: cannot be read: {type(exc).__name__}: "
                          f"{str(exc)[:200]}", code="dataset") from exc


def _parse_dataset(path: Path) -> Dataset:
    source = str(path)
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"dataset file {source}: not valid TOML: {exc}", code="dataset") from exc
    unknown = sorted(set(raw) - {"name", "version", "table", "business_key", "write_mode",
                                 "row_id", "columns"})
    if unknown:
        raise _fail(source, ", ".join(unknown), "unknown key(s)")
    name = _ident(source, "name", raw.get("name"))
    if name != path.stem:
        raise _fail(source, "name", f"{name!r} must match the file name {path.stem!r}")
    version = raw.get("version", 1)
    if not isinstance(version, int) or version < 1:
        raise _fail(source, "version", f"{version!r} must be a positive whole number")
    table = _ident(source, "table", raw.get("table", name))
    cols_raw = raw.get("columns")
    if not isinstance(cols_raw, dict) or not cols_raw:
        raise _fail(source, "columns", "at least one column is required")
    columns = tuple(_column(source, n, c) for n, c in cols_raw.items())
    names = {c.name for c in columns}
    key = raw.get("business_key")
    if not isinstance(key, list) or not key or not all(k in names for k in key):
        raise _fail(source, "business_key", f"{key!r} must list one or more of the columns")
    for k in key:
        col = next(c for c in columns if c.name == k)
        if not col.required:
            raise _fail(source, "business_key", f"{k!r} must be a required column")
    mode = raw.get("write_mode", "insert")
    if mode not in WRITE_MODES:
        raise _fail(source, "write_mode", f"{mode!r} must be one of {WRITE_MODES}")
    sql_names = [s for c in columns for s in c.sql] + [c.hash_column for c in columns if c.sensitive]
    dupes = sorted({s for s in sql_names if sql_names.count(s) > 1})
    if dupes:
        raise _fail(source, "columns", f"SQL column(s) {', '.join(dupes)} mapped twice")
    for c in columns:
        if c.derive:
            refs = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", c.derive))
            if not refs <= names:
                raise _fail(source, f"columns.{c.name}.derive",
                            f"unknown column(s) {', '.join(sorted(refs - names))}")
            try:
                check_expression(c.derive, names)
            except (ValueError, SyntaxError) as exc:
                raise _fail(source, f"columns.{c.name}.derive",
                            "only + - * / ( ), numbers and column names") from exc
            except RecursionError as exc:  # a very long or deeply nested expression
                raise _fail(source, f"columns.{c.name}.derive",
                            "too long or too deeply nested to evaluate") from exc
    row_id = _ident(source, "row_id", raw.get("row_id", "id"))
    return Dataset(name=name, version=version, table=table, business_key=tuple(key),
                   write_mode=mode, columns=columns, row_id=row_id, source=source,
                   fingerprint=hashlib.sha256(data).hexdigest()[:16])


def _files(extra_dir: Path | None) -> dict[str, Path]:
    """Dataset name -> its file: the shipped ones, then DATASETS_DIR (which may override)."""
    found: dict[str, Path] = {}
    for directory in (SHIPPED_DIR, extra_dir):
        if directory is None:
            continue
        for path in sorted(directory.glob("*.toml")):
            found[path.stem] = path
    return found


def load_datasets(extra_dir: Path | None = None) -> dict[str, Dataset]:
    """All datasets; a broken file raises ConfigError naming it (for the CLI and doctor)."""
    return {name: parse_dataset(path) for name, path in _files(extra_dir).items()}


def scan_datasets(extra_dir: Path | None = None) -> tuple[dict[str, Dataset], dict[str, str]]:
    """(the datasets that parse, name -> error for those that do not): a broken file
    must not stop the others (the worker reports these at start)."""
    good: dict[str, Dataset] = {}
    broken: dict[str, str] = {}
    for name, path in _files(extra_dir).items():
        try:
            good[name] = parse_dataset(path)
        except ConfigError as exc:
            broken[name] = exc.message
    return good, broken


def get_dataset(name: str, extra_dir: Path | None = None) -> Dataset:
    """One dataset, parsing only its own file: another dataset's broken file cannot fail it."""
    files = _files(extra_dir)
    if name not in files:
        known = ", ".join(sorted(files)) or "none"
        raise ConfigError(f"unknown dataset {name!r} (known: {known})", code="unknown_dataset")
    return parse_dataset(files[name])


def dataset_version(dataset: Dataset) -> str:
    """The dataset's version as failed files record it: the declared ``version`` and the
    spec file's fingerprint (so an edited file counts as changed even unbumped)."""
    return f"{dataset.version}-{dataset.fingerprint}"
