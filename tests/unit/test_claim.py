"""``ledger.claim_file``: the file's lock first, then the re-checks, in that order, on a
cursor double that answers as PostgreSQL would (no server needed)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from sales_etl.core.errors import Skipped
from sales_etl.core.reasons import Moved
from sales_etl.db import ledger


class FakeCursor:
    """Answers the lock try with ``locks`` (one per try) and the loaded-run query with
    ``loaded``; records every statement."""

    def __init__(self, locks: list[bool], loaded: int | None = None) -> None:
        self.locks, self.loaded = list(locks), loaded
        self.statements: list[str] = []
        self.rollbacks = 0
        self.connection = self
        self._row: tuple[Any, ...] | None = None

    def execute(self, sql: str, params: Any = None) -> None:
        self.statements.append(sql)
        if "pg_try_advisory_xact_lock" in sql:
            self._row = (self.locks.pop(0),)
        elif "FROM etl_runs" in sql:
            self._row = (self.loaded,) if self.loaded is not None else None
        else:
            raise AssertionError(f"unexpected statement: {sql}")

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._row

    def rollback(self) -> None:
        self.rollbacks += 1


def never(calls: list[str]) -> Callable[[], Moved | None]:
    def current() -> Moved | None:
        calls.append("current")
        return None

    return current


def test_a_free_file_is_claimed_and_still_in_place_loads() -> None:
    cur, calls = FakeCursor([True]), list[str]()
    assert ledger.claim_file(cur, "sales", "incoming/a.csv", '"0x1"', never(calls)) is None
    assert "pg_try_advisory_xact_lock" in cur.statements[0]  # the first statement
    assert len(cur.statements) == 2 and calls == ["current"]


def test_a_version_already_loaded_returns_its_run_without_looking_further() -> None:
    cur, calls = FakeCursor([True], loaded=41), list[str]()
    assert ledger.claim_file(cur, "sales", "incoming/a.csv", '"0x1"', never(calls)) == 41
    assert calls == []


def test_a_local_file_has_no_version_to_recheck() -> None:
    cur = FakeCursor([True], loaded=41)
    assert ledger.claim_file(cur, "sales", "/data/a.csv", None) is None
    assert len(cur.statements) == 1


@pytest.mark.parametrize("why", ["gone", "superseded"])
def test_a_version_moved_or_replaced_meanwhile_is_skipped(why: Moved) -> None:
    cur = FakeCursor([True])
    with pytest.raises(Skipped) as caught:
        ledger.claim_file(cur, "sales", "incoming/a.csv", '"0x1"', lambda: why)
    assert caught.value.code == why and "no longer in place" in caught.value.message


def test_a_held_lock_is_waited_for_then_the_claim_goes_on() -> None:
    cur = FakeCursor([False, False, True])
    assert ledger.claim_file(cur, "sales", "incoming/a.csv", '"0x1"', lambda: None) is None
    assert cur.rollbacks == 2  # between tries nothing is held open


def test_a_lock_still_held_after_the_wait_is_in_progress(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledger, "CLAIM_WAIT_SECONDS", 0.0)
    cur = FakeCursor([False])
    with pytest.raises(Skipped) as caught:
        ledger.claim_file(cur, "sales", "incoming/a.csv", '"0x1"', lambda: None)
    assert caught.value.code == "in_progress"
    assert len(cur.statements) == 1  # nothing re-checked without the lock
