"""Hot units on SQLite: synchronous statements and commits on the loop's thread (issue 20;
storage/hot_session.py).

Which thread ran a statement is read from SQLite itself: a user function returns the thread it is
called on; which thread committed, from SQLAlchemy's commit event. What may wait long (the
``BEGIN`` when another process holds the file's write lock, durable commits once a flush was
slow) waits off the loop: a ticker shows the loop running on meanwhile.
"""

from __future__ import annotations

import asyncio
import functools
import math
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy import text as sql_text
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import Database
from storage.hot_session import SLOW_FLUSH_BACKOFF_SECONDS, SLOW_FLUSH_SECONDS, HotSession


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/hot.db")

    def thread_function(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)

    for engine in database.sync_engines():
        event.listen(engine, "connect", thread_function)
    async with database.transaction() as session:
        await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    yield database
    await database.close()


@asynccontextmanager
async def ticking() -> AsyncIterator[list[int]]:
    """Counts the loop's turns, one each 10 ms, while the body runs: the loop is not stalled."""
    ticks = [0]

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.01)
            ticks[0] += 1

    ticker = asyncio.create_task(tick())
    try:
        yield ticks
    finally:
        ticker.cancel()


async def ran_on(session: AsyncSession, statement: str = "SELECT thread_id()") -> int:
    return int((await session.exec(sql_text(statement))).scalar_one())  # type: ignore[call-overload]


async def rows(db: Database) -> list[int]:
    async with db.transaction() as session:
        return list((await session.exec(sql_text("SELECT n FROM t ORDER BY n"))).scalars().all())  # type: ignore[call-overload]


def committing_threads(db: Database) -> list[int]:
    """The thread of each commit from now on, of every engine of ``db``."""
    threads: list[int] = []
    for engine in db.sync_engines():
        event.listen(engine, "commit", lambda _connection: threads.append(threading.get_ident()))
    return threads


async def test_a_hot_units_statements_and_commit_run_on_the_loop_while_the_disk_is_fast(db: Database) -> None:
    loop_thread = threading.get_ident()
    commits = committing_threads(db)

    async def work(session: AsyncSession) -> list[int]:
        assert isinstance(session, HotSession)
        return [
            await ran_on(session),
            await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING thread_id()"),
            await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING thread_id()"),
        ]

    assert db._hot is not None
    db._hot.clock = lambda: 1000.0  # every flush takes no time: a fast disk
    assert await db.retrying_unit(work) == [loop_thread] * 3
    assert commits == [loop_thread]  # a fast flush costs the loop less than a hop to the thread
    assert await rows(db) == [1, 2]


async def test_after_a_slow_flush_durable_commits_wait_for_the_disk_off_the_loop_for_a_while(
    db: Database,
) -> None:
    """A commit slower than SLOW_FLUSH_SECONDS (a slow or busy disk) moves the next durable
    commits to the thread; after SLOW_FLUSH_BACKOFF_SECONDS they try the loop again. Relaxed
    commits (no flush) stay on the loop."""
    assert db._hot is not None
    now = [1000.0]
    db._hot.clock = lambda: now[0]
    loop_thread = threading.get_ident()
    commits = committing_threads(db)

    def slow_disk(_connection: Any) -> None:
        now[0] += 2 * SLOW_FLUSH_SECONDS

    async def write(n: int, *, relaxed: bool = False) -> None:
        opened = db.relaxed_transaction(inline=True) if relaxed else db.transaction(inline=True)
        async with opened as session:
            await ran_on(session, f"INSERT INTO t (n) VALUES ({n}) RETURNING n")

    def slowly(write: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        async def slow_write() -> None:
            for engine in db.sync_engines():
                event.listen(engine, "commit", slow_disk)
            try:
                await write()
            finally:
                for engine in db.sync_engines():
                    event.remove(engine, "commit", slow_disk)

        return slow_write

    await slowly(functools.partial(write, 1, relaxed=True))()  # a relaxed commit waits for no disk
    await write(2)  # so durable commits are still on the loop
    await slowly(functools.partial(write, 3))()  # on the loop, and found slow
    await write(4)  # off the loop now
    await write(5, relaxed=True)  # no flush: on the loop
    now[0] += SLOW_FLUSH_BACKOFF_SECONDS / 2
    await slowly(functools.partial(write, 6))()  # on the thread, and slow again: the wait restarts
    now[0] += SLOW_FLUSH_BACKOFF_SECONDS * 3 / 4
    await write(7)  # still off the loop
    now[0] += SLOW_FLUSH_BACKOFF_SECONDS
    await write(8)  # a whole backoff without a slow flush: the loop again
    off = [thread != loop_thread for thread in commits]
    assert off == [False, False, False, True, False, True, True, False]
    assert await rows(db) == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_a_slow_commit_that_fails_still_moves_commits_off_the_loop(db: Database) -> None:
    """A sick disk: the flush takes long, then fails. It counts as slow all the same."""
    assert db._hot is not None
    now = [1000.0]
    db._hot.clock = lambda: now[0]
    loop_thread = threading.get_ident()

    def slow_then_failing(_connection: Any) -> None:
        now[0] += 2 * SLOW_FLUSH_SECONDS
        raise sqlite3.OperationalError("disk I/O error")

    for engine in db.sync_engines():
        event.listen(engine, "commit", slow_then_failing)
    with pytest.raises(Exception, match="disk I/O error"):
        async with db.transaction(inline=True) as session:
            await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")
    for engine in db.sync_engines():
        event.remove(engine, "commit", slow_then_failing)
    commits = committing_threads(db)
    async with db.transaction(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
    assert len(commits) == 1 and commits[0] != loop_thread
    assert await rows(db) == [2]


async def test_no_commit_checkpoints_on_the_loop_the_thread_does_every_so_often(db: Database) -> None:
    """SQLite's automatic checkpoint would run inside a COMMIT, on the loop, and wait for the
    disk: it is off on the hot connections, and the thread checkpoints every N commits."""
    assert db._hot is not None
    db._hot.checkpoint_every = 3
    loop_thread = threading.get_ident()
    checkpointed: list[int] = []
    checkpoint = db._hot._checkpoint

    def recorded() -> None:
        checkpointed.append(threading.get_ident())
        checkpoint()

    db._hot._checkpoint = recorded  # type: ignore[method-assign]
    for n in range(7):
        async with db.transaction(inline=True) as session:
            autocheckpoint = (await session.exec(sql_text("PRAGMA wal_autocheckpoint"))).scalar_one()  # type: ignore[call-overload]
            assert autocheckpoint == 0
            await ran_on(session, f"INSERT INTO t (n) VALUES ({n}) RETURNING n")
    await db._hot.on_thread(lambda: None)  # the thread's queue has run
    assert len(checkpointed) == 2 and loop_thread not in checkpointed


async def test_a_relaxed_hot_transaction_commits_on_the_loop(db: Database) -> None:
    loop_thread = threading.get_ident()
    commits = committing_threads(db)
    async with db.relaxed_transaction(inline=True) as session:
        assert isinstance(session, HotSession)
        assert await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING thread_id()") == loop_thread
    assert commits == [loop_thread]  # no disk flush to wait for
    assert await rows(db) == [1]


async def test_other_transactions_keep_the_asyncio_session_off_the_loop(db: Database) -> None:
    loop_thread = threading.get_ident()
    async with db.transaction() as session:
        assert not isinstance(session, HotSession)
        assert await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING thread_id()") != loop_thread


async def test_a_failed_hot_unit_leaves_nothing_and_the_next_one_works(db: Database) -> None:
    with pytest.raises(ZeroDivisionError):
        async with db.unit_of_work(inline=True) as session:
            await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")
            raise ZeroDivisionError
    async with db.unit_of_work(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
    assert await rows(db) == [2]


async def test_a_hot_unit_waits_for_another_processs_write_lock_off_the_loop(
    db: Database, tmp_path: Path
) -> None:
    """Each time: after a commit, after a rollback, the next unit's BEGIN finds the lock held and
    waits on the thread (SQLite's busy handler), the loop going on, until the other commits."""
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None)

    async def write(n: int) -> None:
        async with db.transaction(inline=True) as session:
            await ran_on(session, f"INSERT INTO t (n) VALUES ({n}) RETURNING n")

    await write(1)
    with pytest.raises(ZeroDivisionError):
        async with db.transaction(inline=True):
            raise ZeroDivisionError
    for n in (2, 3):
        other.execute("BEGIN IMMEDIATE")  # another process writes
        other.execute(f"INSERT INTO t (n) VALUES ({10 * n})")
        async with ticking() as ticks:
            writing = asyncio.create_task(write(n))
            await asyncio.sleep(0.3)
            assert not writing.done() and ticks[0] >= 10  # waiting, but not on the loop
            other.execute("COMMIT")
            await asyncio.wait_for(writing, 10)
    other.close()
    assert await rows(db) == [1, 2, 3, 20, 30]


async def test_a_unit_cancelled_during_its_durable_commit_waits_for_the_commit_to_end(db: Database) -> None:
    """The commit runs on, on the thread (the disk was found slow); the connection is not touched
    (no rollback racing it) before it ends; then the cancellation passes on, and the next unit
    finds the connection free."""
    assert db._hot is not None
    db._hot.flush_on_thread_until = math.inf
    ended: list[float] = []

    def slow_commit(_connection: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            time.sleep(0.3)
            ended.append(time.monotonic())

    for engine in db.sync_engines():
        event.listen(engine, "commit", slow_commit)

    async def write() -> None:
        async with db.unit_of_work(inline=True) as session:
            await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")

    unit = asyncio.create_task(write())
    await asyncio.sleep(0.1)
    unit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await unit
    raised_at = time.monotonic()
    assert ended and raised_at >= ended[0]  # it raised only once the commit had ended
    for engine in db.sync_engines():
        event.remove(engine, "commit", slow_commit)
    async with db.unit_of_work(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
    assert await rows(db) == [1, 2]  # the cancelled unit's commit had gone through


async def test_a_transaction_opened_inside_a_hot_unit_uses_the_asyncio_session(db: Database) -> None:
    """A composer or a report may open its own transaction from inside a dispatch round: its
    statements may be long, so they run on aiosqlite's thread; it reads what was committed."""
    loop_thread = threading.get_ident()
    async with db.transaction(inline=True) as session:
        assert await ran_on(session) == loop_thread
        async with db.transaction() as inner:
            assert not isinstance(inner, HotSession)
            assert await ran_on(inner) != loop_thread
        assert await ran_on(session) == loop_thread


async def test_sqlite_in_memory_keeps_the_asyncio_session() -> None:
    database = Database("sqlite+aiosqlite://")
    try:
        async with database.transaction(inline=True) as session:
            assert not isinstance(session, HotSession)
    finally:
        await database.close()


async def test_a_hot_transaction_inside_another_of_the_same_task_is_refused_at_once(db: Database) -> None:
    """Its BEGIN would wait for the write lock its own task holds (5 attempts of 10 s each, the
    process's database work stalled meanwhile): refused at once instead; the outer goes on."""
    async with db.transaction(inline=True) as outer:
        await ran_on(outer, "INSERT INTO t (n) VALUES (1) RETURNING n")
        with pytest.raises(RuntimeError, match="inside another"):
            async with db.transaction(inline=True):
                pass
        await ran_on(outer, "INSERT INTO t (n) VALUES (2) RETURNING n")
    async with db.transaction(inline=True) as again:  # released: hot again
        assert isinstance(again, HotSession)
    assert await rows(db) == [1, 2]


async def test_a_failed_commit_leaves_no_transaction_open_on_the_connection(db: Database) -> None:
    """SQLAlchemy forgets a transaction whose commit failed; SQLite keeps it open, holding the
    write lock: every later unit would fail. The unit's end closes it, and the next one works."""
    failures = [1]

    def failing_commit(_connection: Any) -> None:
        if failures:
            failures.pop()
            raise sqlite3.OperationalError("disk I/O error")

    for engine in db.sync_engines():
        event.listen(engine, "commit", failing_commit)
    with pytest.raises(Exception, match="disk I/O error"):
        async with db.transaction(inline=True) as session:
            await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")
    async with db.transaction(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
    async with db.transaction() as session:  # and the asyncio session writes too (no lock held)
        await ran_on(session, "INSERT INTO t (n) VALUES (3) RETURNING n")
    assert await rows(db) == [2, 3]


async def test_a_unit_cancelled_while_waiting_for_the_lock_is_cancelled(db: Database, tmp_path: Path) -> None:
    """The BEGIN waits on the thread; cancelled, the unit waits for it to end, then ends cancelled
    (not with the BEGIN's outcome, not retried), and leaves the connection free."""
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")

    async def work(session: AsyncSession) -> None:
        await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")

    unit = asyncio.create_task(db.retrying_unit(work))
    await asyncio.sleep(0.2)
    unit.cancel()
    await asyncio.sleep(0.1)
    other.execute("COMMIT")  # the BEGIN on the thread goes through now
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(unit, 10)
    other.close()
    async with db.transaction(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
    assert await rows(db) == [2]


async def test_a_unit_cancelled_while_its_begin_times_out_is_cancelled_not_retried(
    db: Database, tmp_path: Path
) -> None:
    """The BEGIN on the thread fails (the lock stayed taken past the busy timeout) after the
    cancel: the unit ends cancelled, not with a busy error that the retry would try again."""
    assert db._hot is not None
    db._hot.busy_timeout_ms = 300
    other = sqlite3.connect(tmp_path / "hot.db", isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    attempts: list[int] = []

    async def work(session: AsyncSession) -> None:
        attempts.append(1)

    unit = asyncio.create_task(db.retrying_unit(work))
    await asyncio.sleep(0.1)
    unit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(unit, 10)
    other.execute("COMMIT")
    other.close()
    assert attempts == []
    async with db.transaction(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
    assert await rows(db) == [2]


async def test_the_hot_connections_keep_the_durability_they_promise(db: Database) -> None:
    """Durable units wait for the disk (synchronous FULL), relaxed ones do not (NORMAL); both
    check foreign keys, as every connection of the database does."""

    async def pragma(session: AsyncSession, name: str) -> int:
        return int((await session.exec(sql_text(f"PRAGMA {name}"))).scalar_one())  # type: ignore[call-overload]

    async with db.transaction(inline=True) as session:
        assert (await pragma(session, "synchronous"), await pragma(session, "foreign_keys")) == (2, 1)
    async with db.relaxed_transaction(inline=True) as session:
        assert (await pragma(session, "synchronous"), await pragma(session, "foreign_keys")) == (1, 1)


async def test_the_hot_connections_open_the_file_the_url_names(tmp_path: Path) -> None:
    """The URL's own query (a driver option) is not part of the file's name."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/q.db?timeout=20")
    try:
        async with database.transaction() as session:
            await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
        async with database.transaction(inline=True) as session:
            assert isinstance(session, HotSession)
            await session.exec(sql_text("INSERT INTO t (n) VALUES (1)"))
        async with database.transaction() as session:
            assert (await session.exec(sql_text("SELECT count(*) FROM t"))).scalar_one() == 1  # type: ignore[call-overload]
    finally:
        await database.close()
    assert not [name for name in os.listdir(tmp_path) if "?" in name]
