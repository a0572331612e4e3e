"""Dataset specifications: one TOML file per dataset (shipped here, or in DATASETS_DIR).

A spec names the CSV columns with their types and rules, the SQL table and columns they
land in, the business key and the sensitive columns. Every identifier is validated here,
so nothing from configuration reaches SQL text unchecked (and it is quoted there too).
The keys of a column's table are declared, and checked, by the rule table
(``rules.RULES``); this module checks the file's own keys and what spans columns (the
business key, SQL names mapped twice, derived expressions). Any problem is a
``ConfigError`` naming the file, the column and the key.
"""

from __future__ import annotations

import hashlib
import re
import tomllib
from pathlib import Path
from typing import Any

from sales_etl.core.errors import ConfigError
from sales_etl.stages.expr import check as check_expression
from sales_etl.stages.rulechecks import IDENTIFIER, NUMERIC, key_text
from sales_etl.stages.rules import spec_problems
from sales_etl.stages.spec import Column, Dataset

SHIPPED_DIR = Path(__file__).resolve().parent
WRITE_MODES = ("insert", "upsert")
DEFAULT_DATASET = "sales"


def _fail(source: str, key: str, what: str) -> ConfigError:
    shown = source if source.isprintable() else repr(source)
    return ConfigError(f"dataset file {shown}: {key}: {what}", code="dataset")


def _ident(source: str, key: str, value: Any) -> str:
    if not isinstance(value, str) or not IDENTIFIER.match(value):
        raise _fail(
            source,
            key,
            f"{value!r} is not a valid SQL identifier (lower-case letters, digits, underscore; at most 63)",
        )
    return value


def _column(source: str, name: str, raw: dict[str, Any]) -> Column:
    """One ``[columns.<name>]`` table, checked rule by rule (``rules.spec_problems``)."""
    where = f"columns.{key_text(name)}"  # one line, whatever the name holds
    problems = spec_problems(raw)
    if problems:
        key, what = problems[0]
        raise _fail(source, f"{where}.{key}" if key else where, what)
    sql = tuple(raw["split"]) if "split" in raw else (_ident(source, f"{where}.sql", raw.get("sql", name)),)
    options = tuple((key, tuple(v) if isinstance(v, list) else v) for key, v in raw.items() if key != "type")
    return Column(name=name, type=raw["type"], sql=sql, options=options)


def parse_dataset(path: Path) -> Dataset:
    """The dataset defined by ``path``; ConfigError (naming the file) for anything wrong in
    it, whatever the parsing runs into: a broken file must fail only its own dataset."""
    try:
        return _parse_dataset(path)
    except ConfigError:
        raise
    except Exception as exc:  # a value of a shape no check foresaw
        raise ConfigError(
            f"dataset file {path}: cannot be read: {type(exc).__name__}: {str(exc)[:200]}", code="dataset"
        ) from exc


def _parse_dataset(path: Path) -> Dataset:
    source = str(path)
    data = path.read_bytes()
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"dataset file {source}: not valid TOML: {exc}", code="dataset") from exc
    unknown = sorted(
        set(raw) - {"name", "version", "table", "business_key", "write_mode", "row_id", "columns"}
    )
    if unknown:
        raise _fail(source, ", ".join(key_text(k) for k in unknown), "unknown key(s)")
    name = _ident(source, "name", raw.get("name"))
    if name != path.stem:
        raise _fail(source, "name", f"{name!r} must match the file name {path.stem!r}")
    version = raw.get("version", 1)
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
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
            where = f"columns.{key_text(c.name)}.derive"
            if not refs <= names:
                raise _fail(source, where, f"unknown column(s) {', '.join(sorted(refs - names))}")
            not_numbers = sorted(
                r for r in refs if next(x for x in columns if x.name == r).type not in NUMERIC
            )
            if not_numbers:
                raise _fail(
                    source,
                    where,
                    f"{', '.join(not_numbers)}: only integer and decimal columns can be computed with",
                )
            try:
                check_expression(c.derive, names)
            except (ValueError, SyntaxError) as exc:
                raise _fail(source, where, "only + - * / ( ), numbers and column names") from exc
            except RecursionError as exc:  # a very long or deeply nested expression
                raise _fail(source, where, "too long or too deeply nested to evaluate") from exc
    row_id = _ident(source, "row_id", raw.get("row_id", "id"))
    return Dataset(
        name=name,
        version=version,
        table=table,
        business_key=tuple(key),
        write_mode=mode,
        columns=columns,
        row_id=row_id,
        source=source,
        fingerprint=hashlib.sha256(data).hexdigest()[:16],
    )


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
