"""The retry policy of a unit of work: the first try runs bare, refusals for now are tried again
(with tenacity's pauses and its limit), errors for good are not (storage/retry.py)."""

from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import DBAPIError, OperationalError

from storage import retry


def _locked() -> DBAPIError:
    cause = sqlite3.OperationalError("database is locked")
    cause.sqlite_errorcode = sqlite3.SQLITE_BUSY
    return OperationalError("INSERT", {}, cause)


class Calls:
    """A unit that the database refuses ``refusals`` times, then lets through."""

    def __init__(self, refusals: int, error: Exception | None = None) -> None:
        self.refusals, self.error, self.count = refusals, error, 0

    async def __call__(self) -> str:
        self.count += 1
        if self.error is not None:
            raise self.error
        if self.count <= self.refusals:
            raise _locked()
        return "stored"


@pytest.fixture(autouse=True)
def short_pauses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "_MULTIPLIER", 0.001)


async def test_a_unit_that_succeeds_runs_once_without_tenacity(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_tenacity(**_: object) -> None:
        raise AssertionError("tenacity's bookkeeping for a unit that needed no retry")

    monkeypatch.setattr(retry, "attempts", no_tenacity)
    calls = Calls(0)
    assert await retry.retrying(calls) == "stored"
    assert calls.count == 1


async def test_the_pauses_grow_as_tenacitys_own_would(monkeypatch: pytest.MonkeyPatch) -> None:
    """Random pauses, each at most twice the one before: the first (taken before tenacity takes
    over) included."""
    pauses: list[float] = []

    async def sleep(seconds: float) -> None:
        pauses.append(seconds)

    monkeypatch.setattr("storage.retry.random.uniform", lambda low, high: high)  # the longest pauses
    monkeypatch.setattr("storage.retry.asyncio.sleep", sleep)
    with pytest.raises(OperationalError):
        await retry.retrying(Calls(retry.ATTEMPTS))
    assert pauses == pytest.approx([0.001, 0.002, 0.004, 0.008])


async def test_a_refusal_for_now_is_tried_again_until_it_goes_through(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = Calls(3)
    assert await retry.retrying(calls) == "stored"
    assert calls.count == 4
    logged = [r.getMessage() for r in caplog.records if r.name == "storage.retry"]
    assert len(logged) == 3, "each retry is logged"
    for line in logged:  # one wording, the driver's error alone (no statement, no parameters)
        assert line.startswith("Retrying in ")
        assert line.endswith("seconds: the database refused it for now (database is locked)")


async def test_refusals_stop_after_the_limit_and_the_last_error_stands() -> None:
    calls = Calls(retry.ATTEMPTS + 5)
    with pytest.raises(OperationalError, match="database is locked"):
        await retry.retrying(calls)
    assert calls.count == retry.ATTEMPTS


async def test_an_error_for_good_is_not_tried_again() -> None:
    calls = Calls(0, error=ValueError("no such column"))
    with pytest.raises(ValueError, match="no such column"):
        await retry.retrying(calls)
    assert calls.count == 1
    calls = Calls(0, error=DBAPIError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")))
    with pytest.raises(DBAPIError):
        await retry.retrying(calls)
    assert calls.count == 1
