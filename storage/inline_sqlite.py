"""aiosqlite with the short statements of hot units run on the event loop's own thread.

aiosqlite runs every call on a worker thread: creating a cursor, executing, fetching and closing
it are four hops there and back (a queue put, a self-pipe write, a loop wake-up each), which cost
more CPU than the statements of an inbound event themselves. Inside :func:`inline_statements`
(the hot units: one inbound event, one dispatch round) a statement runs on the loop's thread
when it cannot wait for anything:

- a read: in WAL mode a reader never waits for a writer;
- any statement once this connection's transaction has written: it holds SQLite's write lock
  until it commits, so no other connection can make it wait.

What may wait stays on the worker thread, where SQLite's busy handler can sleep without
stalling the loop: the first write of a transaction (it takes the file's write lock, which
another process may hold), commits (they flush to disk) and rollbacks, and everything outside
:func:`inline_statements` (reports, migrations, a digest over many rows). Only ever one
statement of a connection at a time (SQLAlchemy serialises them), so the sqlite3 connection is
shared between the two threads with ``check_same_thread=False``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import partial
from typing import Any, cast

import aiosqlite

_INLINE: ContextVar[bool] = ContextVar("salesbot_inline_statements", default=False)


@contextmanager
def inline_statements() -> Iterator[None]:
    """Let this task's short statements run on the loop's thread (see the module's docstring).
    Only for units whose statements are each small: a statement run inline blocks the loop."""
    token = _INLINE.set(True)
    try:
        yield
    finally:
        _INLINE.reset(token)


def _verb(sql: str) -> str:
    return sql.lstrip()[:7].upper()


_WRITES = ("INSERT ", "UPDATE ", "DELETE ", "REPLACE")


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
        self._inline = self._conn.may_inline(verb)
        if self._inline:
            self._cursor.execute(sql, () if parameters is None else cast(Any, parameters))
        else:
            await super().execute(sql, parameters)
        self._conn.ran(verb)
        return self

    async def executemany(self, sql: str, parameters: Iterable[Iterable[Any]]) -> InlineCursor:
        verb = _verb(sql)
        self._inline = self._conn.may_inline(verb)
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


class InlineConnection(aiosqlite.Connection):
    """aiosqlite's connection whose cursors run inline where nothing can wait."""

    _wrote = False  # this transaction has written: it holds the file's write lock

    def may_inline(self, verb: str) -> bool:
        if not _INLINE.get():
            return False
        return verb.startswith("SELECT") or (self._wrote and self._conn.in_transaction)

    def ran(self, verb: str) -> None:
        """A statement succeeded: a write leaves the write lock held until the transaction ends."""
        if verb.startswith(_WRITES):
            self._wrote = self._conn.in_transaction

    async def commit(self) -> None:
        self._wrote = False
        await super().commit()

    async def rollback(self) -> None:
        self._wrote = False
        await super().rollback()

    def cursor(self) -> InlineCursor:  # type: ignore[override]
        # a cursor is a plain object: made on the loop's thread (aiosqlite: a hop)
        return InlineCursor(self, self._conn.cursor())


async def connect(database: str, **kwargs: Any) -> InlineConnection:
    """An :class:`InlineConnection` to ``database``, opened on its worker thread (``kwargs``:
    sqlite3.connect's, as SQLAlchemy's dialect builds them)."""
    kwargs["check_same_thread"] = False
    connection = InlineConnection(partial(sqlite3.connect, database, **kwargs), 64)
    connection._thread.daemon = True  # as SQLAlchemy does: a forgotten pool never blocks exit
    await connection
    return connection
