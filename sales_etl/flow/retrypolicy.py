"""The retry policy: what a failure writes on its blob, and what the sweep does with a blob
in failed/. Pure: no clients, no environment, no clock (``now`` is an argument), so every
rule is unit-tested without services. (Named ``retrypolicy`` beside ``retry``, the sweep:
``retry`` does the I/O over the decisions made here.)

* **Backoff.** Attempt *n* (1-based) waits ``base * 2**(n-1)`` seconds, capped at
  ``RETRY_MAX_SECONDS`` (``backoff``).
* **The failure's metadata** (``failure_metadata``): the attempt count, the kind
  (``transient`` or ``data``), the reason code and message, when it failed, when it is due
  again, and the dataset and app versions it failed with. The writer (``pipeline``) adds
  where the blob came from and the run's id.
* **The decision for a blob in failed/** (``decide``), in this order:

  1. it used up ``RETRY_MAX_ATTEMPTS``: ``DEADLETTER``, forced or not (``sales-etl
     requeue`` gives a blob a fresh set of attempts);
  2. forced (``retry-failed --force``): ``RETRY``;
  3. a data failure: ``RETRY`` when the app version or its dataset's version changed since
     it failed (a missing version in the metadata is ""; a dataset whose definition is
     broken has version "", so its files stay until the file is fixed); ``KEEP`` when
     nothing changed, and also when the dataset's current version is not known (no
     definition, or the definitions could not be read) and the app is the same;
  4. anything else is transient: ``RETRY`` once ``next_attempt_at`` has passed (or is
     unreadable), else ``WAIT`` until then.

Blob metadata is untrusted input: anyone who can upload can set it. Each value is parsed
defensively and clamped (``parse_attempts``, ``parse_time``, ``next_attempt``); an
unreadable one has a fixed meaning, never an exception.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation

from sales_etl.config.settings import RetrySettings
from sales_etl.core.errors import EtlError, TransientError
from sales_etl.stages.names import quote_meta

__all__ = [
    "Action",
    "Decision",
    "backoff",
    "decide",
    "failure_metadata",
    "next_attempt",
    "parse_attempts",
    "parse_time",
]

REASON_LIMIT = 900  # characters of the (quoted) reason kept in metadata
_ATTEMPTS_MAX_TEXT = 12
_MAX_EXPONENT = 64  # 2**64 seconds is past any cap: the exponent never grows further


# ----------------------------------------------------------------------------- backoff


def backoff(attempt: int, policy: RetrySettings) -> timedelta:
    """How long after attempt ``attempt`` (1-based; 0 or less counts as 1) the file waits:
    ``base * 2**(attempt-1)`` seconds, never more than ``policy.max_seconds``."""
    exponent = min(max(0, attempt - 1), _MAX_EXPONENT)
    return _seconds(min(policy.max_seconds, policy.base_seconds * 2**exponent))


# RETRY_MAX_SECONDS has no upper bound in the settings: a cap of millennia must not make
# every failure raise OverflowError (the file would then never reach failed/) nor every
# sweep of a blob fail. Times saturate at the latest one a datetime holds.
_LATEST = datetime.max.replace(tzinfo=UTC)


def _seconds(seconds: int) -> timedelta:
    return timedelta(seconds=min(seconds, timedelta.max.days * 86400 + timedelta.max.seconds))


def _after(when: datetime, delay: timedelta) -> datetime:
    try:
        return when + delay
    except OverflowError:
        return _LATEST


def failure_metadata(
    *,
    attempt: int,
    error: EtlError,
    now: datetime,
    dataset_version: str,
    app_version: str,
    policy: RetrySettings,
) -> dict[str, str]:
    """The retry state a failed attempt writes on its blob in failed/ (the reason quoted for
    metadata, which must be ASCII). A ``TransientError`` is ``transient``; any other error
    is ``data`` (retried only when something changed)."""
    now = as_utc(now)
    return {
        "attempts": str(attempt),
        "kind": "transient" if isinstance(error, TransientError) else "data",
        "reason_code": error.code,
        "reason": quote_meta(error.message, REASON_LIMIT),
        "failed_at": now.isoformat(timespec="seconds"),
        "next_attempt_at": _after(now, backoff(attempt, policy)).isoformat(timespec="seconds"),
        "dataset_version": dataset_version,
        "app_version": app_version,
    }


# ----------------------------------------------------------------------------- metadata


def parse_attempts(value: str | None, maximum: int) -> int:
    """The ``attempts`` a blob's metadata claims, clamped to 0..``maximum``: a whole number
    (``2``, also written ``2.0``); negative counts as 0, more than ``maximum`` as
    ``maximum``; anything unreadable (``abc``, ``2.5``, ``nan``, empty) as 0: a file whose
    retry state is unreadable starts over, and the next failure writes a sound one."""
    text = (value or "").strip()
    if not text or len(text) > _ATTEMPTS_MAX_TEXT:
        return maximum if text.lstrip("+").isdigit() else 0
    try:
        number = Decimal(text)
    except InvalidOperation:
        return 0
    if not number.is_finite() or number != number.to_integral_value():
        return 0
    if number.adjusted() > 18:  # "1e9999999": clamped without building a 10-million-digit int
        return maximum if number > 0 else 0
    return max(0, min(maximum, int(number)))


def parse_time(value: str | None) -> datetime | None:
    """An ISO-8601 time from metadata, as UTC (a time without a zone is read as UTC);
    None when unreadable."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # (year 1 at +14:00 is before datetime.min in UTC)
        return None


def next_attempt(
    meta: Mapping[str, str], moved_at: datetime | None, policy: RetrySettings
) -> datetime | None:
    """When a transient failure is due again: ``next_attempt_at``, but never later than
    ``RETRY_MAX_SECONDS`` after the blob landed in failed/ (its server-set last-modified
    time), so a tampered far-future time cannot park a blob for ever. None (due now) when
    unreadable."""
    due = parse_time(meta.get("next_attempt_at"))
    if due is None or moved_at is None:
        return due
    latest = _after(as_utc(moved_at), _seconds(policy.max_seconds))
    return min(due, latest)


def as_utc(when: datetime) -> datetime:
    """``when`` as an aware UTC time (a naive one is read as UTC)."""
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


# ----------------------------------------------------------------------------- decision


class Action(enum.Enum):
    DEADLETTER = "deadletter"  # out of attempts: to deadletter/
    RETRY = "retry"  # back to incoming/
    KEEP = "keep"  # a data failure with nothing changed: stays in failed/
    WAIT = "wait"  # a transient failure not due yet: stays in failed/ until ``due``


@dataclass(frozen=True)
class Decision:
    action: Action
    attempts: int  # the sound attempt count, 1..max_attempts (a blob in failed/ failed once)
    why: str  # a few words for logs and tests: "max attempts", "forced", "dataset changed"...
    due: datetime | None = None  # WAIT: when the blob is due again
    # What a move writes back on the blob (None: nothing): the sound count, when the
    # metadata said something else, so the retry state travels with the blob.
    repair: dict[str, str] | None = None


def decide(
    meta: Mapping[str, str],
    *,
    last_modified: datetime | None,
    now: datetime,
    app_version: str,
    dataset_version: str | None,
    force: bool,
    policy: RetrySettings,
) -> Decision:
    """The sweep's decision for one blob in failed/ (rules in the module docstring).

    ``meta`` is the blob's metadata as stored (untrusted), ``last_modified`` its server-set
    last-modified time (when it landed in failed/), ``app_version`` the running app's,
    ``dataset_version`` the current version of the blob's dataset ("" for a broken
    definition, None when not known)."""
    # a blob in failed/ failed at least once, whatever its metadata says
    attempts = max(1, parse_attempts(meta.get("attempts"), policy.max_attempts))
    repair = {"attempts": str(attempts)} if meta.get("attempts") != str(attempts) else None

    def decision(action: Action, why: str, due: datetime | None = None) -> Decision:
        return Decision(action, attempts, why, due, repair)

    if attempts >= policy.max_attempts:  # forced or not: `requeue` resets it
        return decision(Action.DEADLETTER, "max attempts")
    if force:
        return decision(Action.RETRY, "forced")
    if meta.get("kind") == "data":
        if meta.get("app_version") != app_version:
            return decision(Action.RETRY, "app changed")
        # storage drops empty metadata: a missing version is ""
        if dataset_version is not None and (meta.get("dataset_version") or "") != dataset_version:
            return decision(Action.RETRY, "dataset changed")
        return decision(
            Action.KEEP, "nothing changed" if dataset_version is not None else "dataset version unknown"
        )
    due = next_attempt(meta, last_modified, policy)
    if due is not None and due > as_utc(now):
        return decision(Action.WAIT, "backoff", due)
    return decision(Action.RETRY, "due")
