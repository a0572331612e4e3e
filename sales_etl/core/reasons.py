"""Reason codes: the one registry of every code a row, a file or a command can end with.

A code is one short name with a one-line meaning, at one level (a code may sit at two, e.g.
``not_utf8``: a row in another encoding is rejected, a header in one fails the file):

* ``row``: a rejected row, in the rejects file's ``reason_code`` column (the file loads);
* ``file``: a file's outcome other than a plain load, in the ledger's ``reason_code`` and the
  blob's metadata: a whole-file failure (data or transient), a skip, or a note on a load;
* ``command``: a command that refuses to run (a setting, a dataset file, a name, a key).

Where codes are raised they are typed: ``RowCode`` (``records.Reject``, the transform's
flags) and ``Code`` (``errors.EtlError``), so mypy refuses a code that is not registered
here; ``tests/unit/test_reasons.py`` holds the ``Literal`` types, ``REASONS`` and the
list of codes in docs/reason-codes.md to one another, both ways. Adding a code: one line in ``REASONS``,
its name in the ``Literal`` of its level, and in docs/reason-codes.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast, get_args

Level = Literal["row", "file", "command"]

RowCode = Literal[
    "missing_value",
    "bad_integer",
    "bad_decimal",
    "too_many_decimals",
    "out_of_range",
    "bad_value",
    "bad_timestamp",
    "bad_date",
    "bad_format",
    "too_long",
    "total_mismatch",
    "derived_mismatch",
    "duplicate_in_file",
    "unique_conflict",
    "field_count",
    "nul_byte",
    "not_utf8",
    "bare_cr",
    "bad_quoting",
]

FileCode = Literal[
    # data errors: the file goes to failed/, retried when the dataset or the app changed
    "empty_file",
    "not_csv",
    "not_gzip",
    "bad_gzip",
    "not_utf8",
    "bad_csv",
    "too_many_columns",
    "record_too_long",
    "gzip_ratio",
    "decompressed_too_large",
    "bad_delimiter",
    "duplicate_column",
    "missing_columns",
    "unknown_dataset",
    "db_data",
    "unsafe_name",
    # transient errors: retried with backoff
    "db_unreachable",
    "db_transient",
    "db_error",
    "too_many_connections",
    "storage_transient",
    "blob_changed",
    "in_progress",
    "db_conflict",
    "io_transient",
    "interrupted",
    "unexpected",
    "error",
    # skipped (nothing loaded by this invocation), or a note on a load
    "already_loaded",
    "gone",
    "superseded",
    "not_incoming",
    "requeued",
    "same_content",
]

CommandCode = Literal[
    "settings", "dataset", "bad_blob_name", "not_found", "wrong_key", "storage_unreachable", "no_migrations"
]

Code = RowCode | FileCode | CommandCode
Moved = Literal["gone", "superseded"]  # why a blob version is no longer in place (file codes)


@dataclass(frozen=True)
class Reason:
    code: str
    level: Level
    meaning: str


REASONS: tuple[Reason, ...] = (
    # rows: the rejects file (line, reason_code, reason, raw_row); the file still loads
    Reason("missing_value", "row", "a required value is empty"),
    Reason("bad_integer", "row", "not a whole number"),
    Reason("bad_decimal", "row", "not a number with a dot for decimals"),
    Reason("too_many_decimals", "row", "more decimal places than the column's scale"),
    Reason("out_of_range", "row", "below min or above max (also a date outside PostgreSQL's)"),
    Reason("bad_value", "row", "not one of an enum's values"),
    Reason("bad_timestamp", "row", "not a valid timestamp in the column's format"),
    Reason("bad_date", "row", "not a valid date in the column's format"),
    Reason("bad_format", "row", "does not match the column's pattern"),
    Reason("too_long", "row", "longer than max_length"),
    Reason(
        "total_mismatch",
        "row",
        "a stated total further than the tolerance from its derivation (a dataset's declared mismatch code)",
    ),
    Reason(
        "derived_mismatch", "row", "a stated derived value further than the tolerance from its derivation"
    ),
    Reason("duplicate_in_file", "row", "the business key appears on an earlier line"),
    Reason("unique_conflict", "row", "a value another key already holds in a unique index"),
    Reason("field_count", "row", "not as many fields as the header"),
    Reason("nul_byte", "row", "contains a NUL byte"),
    Reason("not_utf8", "row", "not UTF-8 text"),
    Reason("bare_cr", "row", "a carriage return inside an unquoted field"),
    Reason("bad_quoting", "row", "a closing quote followed by something else than a comma or the line end"),
    # files: data errors
    Reason("empty_file", "file", "no header line"),
    Reason("not_csv", "file", "an image, a spreadsheet, binary data"),
    Reason("not_gzip", "file", "named .gz but not gzip data"),
    Reason("bad_gzip", "file", "corrupt gzip data"),
    Reason("not_utf8", "file", "a header, or a whole file, in another encoding"),
    Reason("bad_csv", "file", "unreadable CSV, e.g. an unterminated quote"),
    Reason("too_many_columns", "file", "a header wider than the column limit"),
    Reason("record_too_long", "file", "a record longer than the record limit"),
    Reason("gzip_ratio", "file", "decompresses too many times its size"),
    Reason("decompressed_too_large", "file", "decompressed content over the size limit"),
    Reason("bad_delimiter", "file", "a header separated by semicolons or tabs"),
    Reason("duplicate_column", "file", "a column name twice in the header"),
    Reason("missing_columns", "file", "a required column missing from the header"),
    Reason("unknown_dataset", "file", "no such dataset, or its dataset file is broken"),
    Reason("db_data", "file", "the database refused a value (a data error)"),
    Reason("unsafe_name", "file", "a blob name not confined to its folder"),
    # files: transient errors
    Reason("db_unreachable", "file", "the database cannot be reached"),
    Reason("db_transient", "file", "a database failure worth retrying"),
    Reason("db_error", "file", "another database error (retried)"),
    Reason("too_many_connections", "file", "the database's connection limit reached"),
    Reason("storage_transient", "file", "a storage failure worth retrying"),
    Reason("blob_changed", "file", "the blob changed or vanished while read"),
    Reason("in_progress", "file", "another invocation is loading the file"),
    Reason("db_conflict", "file", "other files kept committing the same unique value"),
    Reason("io_transient", "file", "a network or I/O failure"),
    Reason("interrupted", "file", "the process was interrupted"),
    Reason("unexpected", "file", "an unexpected error (retried, values dropped)"),
    Reason("error", "file", "a setting the load needs is missing"),
    # files: skipped, or a note on a load
    Reason("already_loaded", "file", "this blob version was loaded already"),
    Reason("gone", "file", "the blob was moved away meanwhile"),
    Reason("superseded", "file", "a newer version of the blob replaced it"),
    Reason("not_incoming", "file", "the blob is not under incoming/"),
    Reason("requeued", "file", "moved back to incoming/ by an operator"),
    Reason("same_content", "file", "loaded; an earlier run loaded the same content"),
    # commands
    Reason("settings", "command", "missing or malformed settings"),
    Reason("dataset", "command", "a malformed dataset file"),
    Reason("bad_blob_name", "command", "a blob name refused for an upload or a look-up"),
    Reason("not_found", "command", "no such blob"),
    Reason("wrong_key", "command", "a value that no configured key decrypts"),
    Reason("storage_unreachable", "command", "nothing answers at the storage endpoint"),
    Reason("no_migrations", "command", "no migrations folder, or an empty one, to apply"),
)

_LEVEL_TYPES: dict[Level, object] = {"row": RowCode, "file": FileCode, "command": CommandCode}


def codes(level: Level) -> frozenset[str]:
    """The registered codes of one level."""
    return frozenset(r.code for r in REASONS if r.level == level)


def typed_codes(level: Level) -> frozenset[str]:
    """The codes the ``Literal`` type of one level allows (a test holds them to ``codes``)."""
    return frozenset(get_args(_LEVEL_TYPES[level]))


def meaning(code: str, level: Level) -> str:
    for r in REASONS:
        if r.code == code and r.level == level:
            return r.meaning
    raise KeyError(f"{code!r} is not a registered {level} reason code")


def row_code(value: str) -> RowCode:
    """``value`` as a row code (e.g. read back from the database or a dataset file);
    ValueError when it is not registered."""
    if value not in codes("row"):
        raise ValueError(f"{value!r} is not a registered row reason code")
    return cast(RowCode, value)


def file_code(value: str) -> FileCode:
    """``value`` as a file code (one computed at run time); ValueError when it is not
    registered."""
    if value not in codes("file"):
        raise ValueError(f"{value!r} is not a registered file reason code")
    return cast(FileCode, value)
