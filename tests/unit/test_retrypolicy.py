"""The retry policy without services: the backoff table, the metadata a failure writes, and
every branch of the sweep's decision, tampered metadata included (the pure half of what
tests/integration/test_retry.py, test_broken_dataset.py and test_guarantees_security.py
assert against Azurite)."""

from __future__ import annotations

import urllib.parse
from datetime import UTC, datetime, timedelta

import pytest

from sales_etl.config.settings import RetrySettings
from sales_etl.core.errors import DataError, TransientError
from sales_etl.flow.retrypolicy import (
    Action,
    Decision,
    backoff,
    decide,
    failure_metadata,
    next_attempt,
    parse_attempts,
)

POLICY = RetrySettings(max_attempts=5, base_seconds=60, max_seconds=6 * 3600)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
APP = "1.2.3"
SALES = "3-abcdef"


def judge(
    meta: dict[str, str],
    *,
    now: datetime = T0,
    last_modified: datetime | None = T0,
    app: str = APP,
    dataset: str | None = SALES,
    force: bool = False,
    policy: RetrySettings = POLICY,
) -> Decision:
    return decide(
        meta,
        last_modified=last_modified,
        now=now,
        app_version=app,
        dataset_version=dataset,
        force=force,
        policy=policy,
    )


def transient(**meta: str) -> dict[str, str]:
    return {
        "attempts": "1",
        "kind": "transient",
        "next_attempt_at": (T0 + timedelta(minutes=1)).isoformat(),
        **meta,
    }


def data(**meta: str) -> dict[str, str]:
    return {"attempts": "1", "kind": "data", "app_version": APP, "dataset_version": SALES, **meta}


# ----------------------------------------------------------------------------- backoff


@pytest.mark.parametrize(
    ("attempt", "seconds"),
    [
        (1, 60),
        (2, 120),
        (3, 240),
        (4, 480),
        (5, 960),
        (6, 1920),
        (7, 3840),
        (8, 7680),
        (9, 15360),
        (10, 21600),
        (11, 21600),
        (64, 21600),
        (10**9, 21600),
        (0, 60),
        (-7, 60),  # never less than the base
    ],
)
def test_backoff_doubles_from_the_base_up_to_the_cap(attempt: int, seconds: int) -> None:
    assert backoff(attempt, POLICY) == timedelta(seconds=seconds)


def test_backoff_follows_the_settings() -> None:
    policy = RetrySettings(max_attempts=3, base_seconds=5, max_seconds=30)
    assert [backoff(n, policy).total_seconds() for n in range(1, 6)] == [5, 10, 20, 30, 30]


# ----------------------------------------------------------------------------- metadata


def test_a_transient_failure_writes_its_state_and_when_it_is_due() -> None:
    now = datetime(2026, 3, 4, 5, 6, 7, 890, tzinfo=UTC)
    meta = failure_metadata(
        attempt=3,
        error=TransientError("db down", code="db_unreachable"),
        now=now,
        dataset_version=SALES,
        app_version=APP,
        policy=POLICY,
    )
    assert meta == {
        "attempts": "3",
        "kind": "transient",
        "reason_code": "db_unreachable",
        "reason": "db down",
        "failed_at": "2026-03-04T05:06:07+00:00",
        "next_attempt_at": "2026-03-04T05:10:07+00:00",  # 60 * 2**2 seconds later
        "dataset_version": SALES,
        "app_version": APP,
    }
    assert next_attempt(meta, now, POLICY) == datetime(2026, 3, 4, 5, 10, 7, tzinfo=UTC)


def test_a_data_failure_is_kind_data_and_its_reason_is_ascii_and_short() -> None:
    message = "línea 2:\nmissing column(s) ü " + "x" * 2000
    meta = failure_metadata(
        attempt=1,
        error=DataError(message, code="missing_columns"),
        now=datetime(2026, 1, 1),
        dataset_version="",
        app_version=APP,
        policy=POLICY,
    )
    assert meta["kind"] == "data" and meta["reason_code"] == "missing_columns"
    assert meta["reason"].isascii() and "\n" not in meta["reason"]
    assert len(meta["reason"]) <= 900
    assert urllib.parse.unquote(meta["reason"]).startswith("línea 2:\nmissing column(s) ü x")
    assert meta["dataset_version"] == ""  # storage drops it; the sweep reads it as ""
    assert meta["failed_at"] == "2026-01-01T00:00:00+00:00"  # a naive now is UTC
    assert meta["next_attempt_at"] == "2026-01-01T00:01:00+00:00"


def test_written_metadata_reads_back_as_the_same_decision() -> None:
    meta = failure_metadata(
        attempt=2,
        error=TransientError("t", code="db_transient"),
        now=T0,
        dataset_version=SALES,
        app_version=APP,
        policy=POLICY,
    )
    assert judge(meta, now=T0 + timedelta(seconds=119)).action is Action.WAIT
    due = judge(meta, now=T0 + timedelta(seconds=120))
    assert (due.action, due.attempts, due.repair) == (Action.RETRY, 2, None)
    kept = failure_metadata(
        attempt=2,
        error=DataError("d", code="bad_csv"),
        now=T0,
        dataset_version=SALES,
        app_version=APP,
        policy=POLICY,
    )
    assert judge(kept, now=T0 + timedelta(days=30)).action is Action.KEEP


# ----------------------------------------------------------------------------- decisions


def test_transient_waits_for_its_backoff_then_is_retried() -> None:
    early = judge(transient())
    assert (early.action, early.due) == (Action.WAIT, T0 + timedelta(minutes=1))
    late = judge(transient(), now=T0 + timedelta(minutes=2))
    assert (late.action, late.attempts, late.repair) == (Action.RETRY, 1, None)
    exactly = judge(transient(), now=T0 + timedelta(minutes=1))
    assert exactly.action is Action.RETRY  # due is due


def test_a_transient_failure_without_a_time_or_a_kind_is_due() -> None:
    assert judge({"attempts": "1", "kind": "transient"}).action is Action.RETRY
    assert judge({"attempts": "1"}).action is Action.RETRY  # no kind: transient
    assert judge({"attempts": "1", "kind": "Data"}).action is Action.RETRY  # only "data" is data


@pytest.mark.parametrize("meta", [transient(), data(), data(app_version="0")])
def test_out_of_attempts_is_deadlettered_forced_or_not(meta: dict[str, str]) -> None:
    meta = {**meta, "attempts": str(POLICY.max_attempts)}
    for force in (False, True):
        decision = judge(meta, now=T0 + timedelta(days=1), force=force)
        assert (decision.action, decision.attempts) == (Action.DEADLETTER, 5)


def test_force_retries_what_would_wait_or_be_kept() -> None:
    assert judge(transient(), force=True).action is Action.RETRY
    assert judge(data(), force=True).action is Action.RETRY
    assert judge(data(), dataset=None, force=True).action is Action.RETRY


def test_a_data_failure_is_kept_until_the_dataset_or_the_app_changes() -> None:
    assert judge(data(), now=T0 + timedelta(days=365)).action is Action.KEEP
    assert judge(data(dataset_version="0-old")).why == "dataset changed"
    assert judge(data(dataset_version="0-old")).action is Action.RETRY
    assert judge(data(app_version="0.9")).action is Action.RETRY
    assert judge(data(), app="1.2.4").why == "app changed"


def test_missing_or_empty_versions() -> None:
    # storage drops empty metadata: a missing dataset version is ""
    no_dataset = {"attempts": "1", "kind": "data", "app_version": APP}
    assert judge(no_dataset, dataset="").action is Action.KEEP  # broken then, broken now
    assert judge({**no_dataset, "dataset_version": ""}, dataset="").action is Action.KEEP
    assert judge(no_dataset, dataset=SALES).action is Action.RETRY  # fixed since
    assert judge(data(), dataset="").action is Action.RETRY  # broken since: fails with reason
    # an app version missing from the metadata is a change (retried once, then written)
    assert judge({"attempts": "1", "kind": "data", "dataset_version": SALES}).action is Action.RETRY
    assert judge(data(app_version="")).action is Action.RETRY


def test_an_unknown_dataset_version_keeps_data_failures_unless_the_app_changed() -> None:
    """No definition for the dataset, or the definitions could not be read: nothing is
    known to have changed, so the file stays (it used to go round until dead-lettered)."""
    kept = judge(data(dataset_version=""), dataset=None)
    assert (kept.action, kept.why) == (Action.KEEP, "dataset version unknown")
    assert judge(data(), dataset=None).action is Action.KEEP
    assert judge(data(app_version="0"), dataset=None).action is Action.RETRY
    assert judge(transient(), dataset=None, now=T0 + timedelta(hours=1)).action is Action.RETRY


# ----------------------------------------------------------------------------- tampered metadata


@pytest.mark.parametrize(
    ("claimed", "attempts", "repair"),
    [
        ("abc", 1, "1"),
        ("-50", 1, "1"),
        ("2.0", 2, "2"),
        ("", 1, "1"),
        (None, 1, "1"),
        ("0", 1, "1"),
        ("nan", 1, "1"),
        ("2.5", 1, "1"),
        ("-1e9999999", 1, "1"),
        (" 3 ", 3, "3"),
        ("3", 3, None),
        ("1", 1, None),
    ],
)
def test_unreadable_attempts_count_as_one_and_are_written_back_sound(
    claimed: str | None, attempts: int, repair: str | None
) -> None:
    meta = {"kind": "transient"} if claimed is None else {"kind": "transient", "attempts": claimed}
    decision = judge(meta)
    assert (decision.action, decision.attempts) == (Action.RETRY, attempts)
    assert decision.repair == (None if repair is None else {"attempts": repair})


@pytest.mark.parametrize("claimed", ["5", "6", "99999", "1e9999999", "99999999999999999999", "5.0", "1e3"])
def test_huge_attempts_are_clamped_and_deadlettered(claimed: str) -> None:
    decision = judge({"kind": "transient", "attempts": claimed})
    assert (decision.action, decision.attempts) == (Action.DEADLETTER, 5)
    assert decision.repair == (None if claimed == "5" else {"attempts": "5"})


def test_huge_attempts_are_clamped_without_expanding_them() -> None:
    # a 10-million-digit int would take minutes: the decision is immediate
    assert parse_attempts("1e9999999", 5) == 5 and parse_attempts("-1e9999999", 5) == 0
    assert parse_attempts("9" * 5000, 5) == 5


@pytest.mark.parametrize(
    ("due", "action"),
    [
        ((T0 - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), Action.RETRY),  # naive: UTC
        ((T0 + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S"), Action.WAIT),
        ("2026-01-01T01:00:00+01:00", Action.RETRY),  # = T0 in UTC: due
        ("2026-01-01T00:30:00-01:00", Action.WAIT),  # = T0 + 1h30 in UTC
        ("not a time", Action.RETRY),  # unreadable: due
        ("", Action.RETRY),
        ("0001-01-01T00:00:00+14:00", Action.RETRY),  # before datetime.min in UTC: unreadable
        ("9999-12-31T23:59:59-14:00", Action.RETRY),  # past datetime.max in UTC: unreadable
        ("1900-01-01T00:00:00+00:00", Action.RETRY),  # far past
        ("9999-12-31T00:00:00+00:00", Action.WAIT),  # far future: clamped, but not due yet
    ],
)
def test_tampered_times(due: str, action: Action) -> None:
    assert judge(transient(next_attempt_at=due)).action is action


def test_a_far_future_time_waits_at_most_max_seconds_after_landing_in_failed() -> None:
    meta = transient(next_attempt_at="9999-12-31T00:00:00+00:00")
    landed = T0 - timedelta(minutes=5)
    waiting = judge(meta, last_modified=landed)
    assert waiting.due == landed + timedelta(seconds=POLICY.max_seconds)
    later = T0 + timedelta(seconds=POLICY.max_seconds + 60)
    assert judge(meta, last_modified=landed, now=later).action is Action.RETRY
    # without a last-modified time nothing clamps it (storage always sets one)
    assert judge(meta, last_modified=None, now=later).action is Action.WAIT


def test_naive_now_and_last_modified_are_utc() -> None:
    naive_now = datetime(2026, 1, 1, 0, 2)
    assert judge(transient(), now=naive_now).action is Action.RETRY
    assert (
        judge(
            transient(next_attempt_at="9999-12-31T00:00:00"),
            last_modified=datetime(2025, 12, 31, 17),
            now=naive_now,
        ).action
        is Action.RETRY
    )


@pytest.mark.parametrize("cap", [10**12, 10**15, 10**30])
def test_a_cap_of_millennia_saturates_instead_of_raising(cap: int) -> None:
    # RETRY_MAX_SECONDS has no upper bound: with a huge one, datetime arithmetic overflowed,
    # so a failure could never be written to failed/ (the move raised) and every sweep of a
    # transient blob failed on it.
    policy = RetrySettings(max_attempts=5, base_seconds=60, max_seconds=cap)
    longest = timedelta(days=timedelta.max.days, seconds=timedelta.max.seconds)
    wanted = min(cap, 60 * 2**64)  # past what a timedelta holds from 10**15 on
    assert backoff(80, policy) == (longest if wanted > longest.total_seconds() else timedelta(seconds=wanted))
    meta = failure_metadata(
        attempt=70,
        error=TransientError("x", code="db_transient"),
        now=T0,
        dataset_version=SALES,
        app_version=APP,
        policy=policy,
    )
    assert datetime.fromisoformat(meta["next_attempt_at"]) > T0 + timedelta(days=365 * 1000)
    waiting = judge({**meta, "attempts": "1"}, policy=policy)
    assert waiting.action is Action.WAIT
    assert (
        judge(
            transient(next_attempt_at="9999-12-31T00:00:00"), policy=policy, now=T0 + timedelta(days=1)
        ).action
        is Action.WAIT
    )
    assert judge(transient(), policy=policy, now=T0 + timedelta(minutes=2)).action is Action.RETRY
