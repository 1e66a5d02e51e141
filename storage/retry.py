"""Which database errors mean "not now, try again", and the retry policy of a whole unit of work.

A unit of work that fails on a busy SQLite file (another process, a backup) or a PostgreSQL
serialization failure or deadlock changed nothing: running it again from the start is safe, and
an inbound event is then stored instead of being logged and lost. tenacity runs the attempts
after the first: nearly every unit succeeds at once, and tenacity's bookkeeping (a retry state, a
future, a lock) cost about 18 us a unit that nothing needed (issue 20).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy.exc import DBAPIError
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

__all__ = ["AsyncRetrying", "attempts", "retrying", "transient"]

T = TypeVar("T")

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # primary result codes (extended codes add bits above 0xff)
_PG_RETRY = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

ATTEMPTS = 5
_MULTIPLIER, _MAX_WAIT = 0.05, 2.0  # seconds: the n-th pause is random, up to 0.05 * 2**(n-1), 2 at most


def transient(exc: BaseException) -> bool:
    """Whether the database refused the work for now (busy, locked, a conflict), not for good."""
    if not isinstance(exc, DBAPIError) or exc.connection_invalidated:
        return False
    cause = exc.orig
    code = getattr(cause, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    sqlstate = getattr(cause, "pgcode", None) or getattr(cause, "sqlstate", None)
    return sqlstate in _PG_RETRY


def attempts(*, tried: int = 0) -> AsyncRetrying:
    """Up to :data:`ATTEMPTS` tries (fewer by ``tried``, the tries made already) with a short random
    pause between them, growing as if the tries made had been its own; the last error stands."""
    return AsyncRetrying(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(ATTEMPTS - tried),
        wait=wait_random_exponential(multiplier=_MULTIPLIER * 2**tried, max=_MAX_WAIT),
        before_sleep=_log_retry,
        reraise=True,
    )


def _log_pause(pause: float, exc: BaseException | None) -> None:
    """One line a retry, the same for every one: the driver's error alone (SQLAlchemy's wrapper
    adds the statement's parameters, which may hold a customer's words)."""
    cause = exc.orig if isinstance(exc, DBAPIError) else exc
    log.warning("Retrying in %.3f seconds: the database refused it for now (%s)", pause, cause)


def _log_retry(state: RetryCallState) -> None:
    pause = state.next_action.sleep if state.next_action is not None else 0.0
    _log_pause(pause, state.outcome.exception() if state.outcome is not None else None)


async def retrying(call: Callable[[], Awaitable[T]]) -> T:
    """``call()``, run again while the database refuses it for now, as :func:`attempts` would; the
    first try runs bare, and tenacity takes over only after a refusal."""
    try:
        return await call()
    except DBAPIError as exc:
        if not transient(exc):
            raise
        pause = random.uniform(0, min(_MAX_WAIT, _MULTIPLIER))  # tenacity's first pause
        _log_pause(pause, exc)
    await asyncio.sleep(pause)
    async for attempt in attempts(tried=1):
        with attempt:
            return await call()
    raise AssertionError("unreachable: the last attempt returns or raises")
