"""Which database errors mean "not now, try again", and the retry policy of a whole unit of work.

A unit of work that fails on a busy SQLite file (another process, a backup) or a PostgreSQL
serialization failure or deadlock changed nothing: running it again from the start is safe, and
an inbound event is then stored instead of being logged and lost. tenacity runs the attempts.
"""

from __future__ import annotations

import logging

from sqlalchemy.exc import DBAPIError
from tenacity import (
    AsyncRetrying,
    before_sleep_log,
    retry_if_exception,
    stop_after_attempt,
    wait_random_exponential,
)

log = logging.getLogger(__name__)

__all__ = ["AsyncRetrying", "attempts", "transient"]

_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6  # primary result codes (extended codes add bits above 0xff)
_PG_RETRY = frozenset({"40001", "40P01"})  # serialization_failure, deadlock_detected

ATTEMPTS = 5


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


def attempts() -> AsyncRetrying:
    """Up to :data:`ATTEMPTS` tries with a short random pause between them; the last error stands."""
    return AsyncRetrying(
        retry=retry_if_exception(transient),
        stop=stop_after_attempt(ATTEMPTS),
        wait=wait_random_exponential(multiplier=0.05, max=2),
        before_sleep=before_sleep_log(log, logging.WARNING),
        reraise=True,
    )
