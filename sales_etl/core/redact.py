"""Scrubbing of text that leaves the process: error messages (the ledger's ``error``, a
failed blob's ``reason`` metadata, command output) and every log record.

Two kinds of content never leave unscrubbed:

* **secrets**: a storage account key, a SAS signature (``sig=``), a password or a token
  inside a connection string or URL; replaced by ``***``;
* **row content** quoted by a parser: Arrow's CSV errors end with the offending row
  (``Expected 8 columns, got 7: TX-1,CUST-42,...``); the row is dropped, the reason kept
  (the file and line are in the text that our own code wrote around it).

``errors.EtlError`` scrubs its message when it is made, so whatever text a module puts
into an error, what the ledger, the metadata and the logs get is scrubbed; ``install()``
(run when this module is imported) scrubs every log record of every logger, the HTTP
stack's DEBUG lines (urllib3, azure-core) included.
"""

from __future__ import annotations

import logging
import re
import traceback
from typing import Any, Final

MASK: Final = "***"

# key=value secrets in connection strings, query strings and DSNs (case-insensitive keys).
_SECRET_PAIRS: Final = re.compile(
    r"(?i)(?:(?<![A-Za-z0-9_])|(?<=%26)|(?<=%3F)|(?<=%3B))(AccountKey|SharedAccessSignature|SharedAccessKey|sig|password|pwd|secret|"
    r"access_token|client_secret|InstrumentationKey|token)(\s*[=:]\s*|%3[dD])"
    r"(?:\"[^\"]*\"|'[^']*'|[^;&\s,'\"<>)]+)"
)
# user:password@ in a URL
_URL_USERINFO: Final = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")
_BEARER: Final = re.compile(r"(?i)\b(Bearer\s+)[A-Za-z0-9._~+/=-]+")
# Arrow's CSV parse errors: "...Row #3: Expected 8 columns, got 7: <the row>"
_ARROW_ROW: Final = re.compile(r"(?s)(?:Row #\d+:\s*)?(Expected \d+ columns?, got \d+)\s*:.*")
# Arrow conversion errors quote the value: "CSV conversion error to int64: invalid value 'x'"
_ARROW_VALUE: Final = re.compile(r"(?s)(invalid value|conversion error[^:]*:)\s*'.*?'")
_QUOTED: Final = re.compile(r"\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*'")
_HEX_BYTES: Final = re.compile(r"\b0x[0-9a-fA-F]{2}(?:\s+0x[0-9a-fA-F]{2})+")


def secrets(text: str) -> str:
    """``text`` with every secret-shaped value masked."""
    text = _SECRET_PAIRS.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group(1)}{MASK}@", text)
    return _BEARER.sub(lambda m: f"{m.group(1)}{MASK}", text)


def row_content(text: str) -> str:
    """``text`` without the row content a parser quotes in its errors."""
    text = _ARROW_ROW.sub(lambda m: m.group(1), text)
    return _ARROW_VALUE.sub(lambda m: f"{m.group(1)} (value not shown)", text)


def scrub(text: str) -> str:
    """What may leave the process of an error text: secrets masked, row content dropped."""
    return secrets(row_content(text))


def values(text: str) -> str:
    """For foreign errors that quote a value (PostgreSQL's data errors, Python's
    ``ValueError`` and ``KeyError``): every quoted string and byte dump dropped."""
    return _HEX_BYTES.sub("(bytes not shown)", _QUOTED.sub("(value not shown)", scrub(text)))


def _scrub_record(record: logging.LogRecord) -> logging.LogRecord:
    try:
        message = record.getMessage()
    except Exception:  # a malformed call: leave it to logging's own error handling
        return record
    clean = scrub(message)
    if clean != message:  # else the template and its arguments stay as they were
        record.msg, record.args = clean, ()
    if record.exc_info and record.exc_info[0] is not None and not record.exc_text:
        formatted = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        record.exc_text = scrub(formatted)
    return record


_installed = False


def install() -> None:
    """Scrub every log record when it is made, whichever logger makes it (urllib3 logs
    each request's URL, SAS signature included, at DEBUG)."""
    global _installed
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return _scrub_record(previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    _installed = True


install()
