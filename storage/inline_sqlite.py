"""aiosqlite with the short statements of hot units run on the event loop's own thread.

aiosqlite runs every call on a worker thread: creating a cursor, executing, fetching and closing
it are four hops there and back (a queue put, a self-pipe write, a loop wake-up each), which cost
more CPU than the statements of an inbound event themselves. Inside :func:`inline_statements`
(the hot units: one inbound event, one dispatch round) a statement runs on the loop's thread
when it should not wait for anything:

- a read: in WAL mode a reader does not wait for a writer;
- the first write of a transaction, which takes the file's write lock: free unless another
  process (a backup, a second salesbot) writes, since this process queues its own transactions
  (``Database._writer``);
- any statement once this connection's transaction has written: it holds SQLite's write lock
  until it commits, so no other connection can make it wait.

Until the transaction holds the lock, SQLite's busy handler is off inline (``busy_timeout`` 0):
should the file be locked (another process writes, a connection in exclusive locking mode, WAL
recovery after a crash), the statement fails at once, having changed nothing, and runs again on
the worker thread, where the busy handler may sleep without stalling the loop. Commits (they
flush to disk) and rollbacks stay on the worker thread, and so does every statement outside
:func:`inline_statements` (reports, migrations, a digest over many rows). Only one statement of
a connection runs at a time (SQLAlchemy serialises them), so the sqlite3 connection is shared
between the two threads with ``check_same_thread=False``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, cast

import aiosqlite

_INLINE: ContextVar[bool] = ContextVar("salesbot_inline_statements", default=False)


@contextmanager
def inline_statements(enabled: bool = True) -> Iterator[None]:
    """Let this task's short statements run on the loop's thread (see the module's docstring),
    or not (``enabled=False``: a transaction opened inside a hot unit, a digest say, whose
    statements may be long). A statement run inline blocks the loop while it runs."""
    token = _INLINE.set(enabled)
    try:
        yield
    finally:
        _INLINE.reset(token)


def _verb(sql: str) -> str:
    return sql.lstrip()[:7].upper()


_WRITES = ("INSERT ", "UPDATE ", "DELETE ", "REPLACE")


def _busy(exc: sqlite3.OperationalError) -> bool:
    return exc.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class InlineCursor(aiosqlite.Cursor):
    """aiosqlite's cursor, inline where :class:`InlineConnection` allows it."""

    _conn: InlineConnection

    def __init__(self, conn: InlineConnection, cursor: sqlite3.Cursor) -> None:
        super().__init__(conn, cursor)
        self._inline = False  # the last statement ran inline: so do its fetches

    async def __aenter__(self) -> InlineCursor:
        return self

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> InlineCursor:
        verb = _verb(sql)
        self._inline = self._conn.may_inline(verb) and self._conn.run_inline(
            self._cursor.execute, sql, () if parameters is None else cast(Any, parameters)
        )
        if not self._inline:
            await super().execute(sql, parameters)
        self._conn.ran(verb)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> InlineCursor:
        verb = _verb(sql)
        # a failed executemany may have run some of its rows: never run again elsewhere
        self._inline = self._conn.may_inline(verb) and self._conn.holds_write_lock()
        if self._inline:
            self._cursor.executemany(sql, cast(Any, parameters))
        else:
            await super().executemany(sql, parameters)
        self._conn.ran(verb)
        return self

    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args) if self._inline else await self._execute(fn, *args)  # type: ignore[no-untyped-call]

    async def fetchone(self) -> sqlite3.Row | None:
        result: sqlite3.Row | None = await self._run(self._cursor.fetchone)
        return result

    async def fetchmany(self, size: int | None = None) -> Iterable[sqlite3.Row]:
        result: Iterable[sqlite3.Row] = await self._run(
            self._cursor.fetchmany, *(() if size is None else (size,))
        )
        return result

    async def fetchall(self) -> Iterable[sqlite3.Row]:
        result: Iterable[sqlite3.Row] = await self._run(self._cursor.fetchall)
        return result

    async def close(self) -> None:
        self._cursor.close()  # frees the statement: no I/O, no lock


class _Opening:
    """What :meth:`InlineConnection.cursor` returns: like aiosqlite's, awaited or entered. The
    sqlite3 cursor is made only then, so a closed connection fails where SQLAlchemy translates
    the error (a disconnect, not a bare ValueError)."""

    def __init__(self, connection: InlineConnection) -> None:
        self.connection = connection

    def _open(self) -> InlineCursor:
        return InlineCursor(self.connection, self.connection._conn.cursor())

    async def __aenter__(self) -> InlineCursor:
        return self._open()

    async def __aexit__(self, *exc: object) -> None:
        return None

    def __await__(self) -> Generator[Any, None, InlineCursor]:
        async def opened() -> InlineCursor:
            return self._open()

        return opened().__await__()


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors run inline where nothing should wait."""

    _wrote = False  # this transaction has written: it holds the file's write lock
    busy_timeout_ms = 0  # the worker thread's busy timeout, restored after each inline statement

    def may_inline(self, verb: str) -> bool:
        """Whether a statement may try the loop's thread: in a hot unit, a read or a write (the
        first write of a transaction with SQLite's busy handler off: see :meth:`run_inline`),
        anything else once this transaction holds the write lock."""
        return _INLINE.get() and (verb.startswith(("SELECT", *_WRITES)) or self.holds_write_lock())

    def holds_write_lock(self) -> bool:
        return self._wrote and self._conn.in_transaction

    def run_inline(self, fn: Callable[..., Any], *args: Any) -> bool:
        """``fn(*args)`` on this thread with SQLite's busy handler off; False (nothing done) when
        the file was locked all the same: the caller runs it on the worker thread instead."""
        connection = self._conn
        if self.holds_write_lock():  # nothing to wait for: its reads see its own snapshot
            fn(*args)
            return True
        if not self.busy_timeout_ms:
            self.busy_timeout_ms = int(connection.execute("PRAGMA busy_timeout").fetchone()[0])
        connection.execute("PRAGMA busy_timeout=0")
        try:
            fn(*args)
        except sqlite3.OperationalError as exc:
            if not _busy(exc):
                raise
            return False
        finally:
            connection.execute(f"PRAGMA busy_timeout={self.busy_timeout_ms}")
        return True

    def ran(self, verb: str) -> None:
        """A statement succeeded: a write leaves the write lock held until the transaction ends."""
        if verb.startswith(_WRITES):
            self._wrote = self._conn.in_transaction

    def cursor(self) -> _Opening:  # type: ignore[override]
        # a cursor is a plain object: made on the loop's thread (aiosqlite: a hop)
        return _Opening(self)

    async def commit(self) -> None:
        self._wrote = False
        await super().commit()

    async def rollback(self) -> None:
        self._wrote = False
        await super().rollback()


async def connect(database: str, **kwargs: Any) -> InlineConnection:
    """An :class:`InlineConnection` to ``database``, opened on its worker thread (``kwargs``:
    sqlite3.connect's, as SQLAlchemy's dialect builds them)."""
    kwargs["check_same_thread"] = False
    connection = InlineConnection(partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does: a forgotten pool never blocks exit
    await connection
    return connection
