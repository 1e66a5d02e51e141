"""Hot units' statements on the event loop's thread (issue 20; storage/inline_sqlite.py).

Which thread ran a statement is read from SQLite itself: a user function returns the thread it is
called on. What must never wait inline is what may wait: the first write of a transaction (another
process may hold the file's write lock) runs inline with SQLite's busy handler off and, refused,
waits on aiosqlite's thread; a ticker shows the loop running on while the unit waits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy import text as sql_text
from sqlmodel.ext.asyncio.session import AsyncSession

from storage import inline_sqlite
from storage.db import Database
from storage.inline_sqlite import inline_statements


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/inline.db")

    def thread_function(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.create_function("thread_id", 0, threading.get_ident)

    event.listen(database.engine.sync_engine, "connect", thread_function)
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


async def test_a_hot_units_reads_and_writes_after_its_first_run_on_the_loops_thread(db: Database) -> None:
    loop_thread = threading.get_ident()

    async def work(session: AsyncSession) -> tuple[int, int, int]:
        before_writing = await ran_on(session)
        first_write = await ran_on(session, "INSERT INTO t (n) VALUES (thread_id()) RETURNING n")
        second_write = await ran_on(session, "INSERT INTO t (n) VALUES (thread_id()) RETURNING n")
        return before_writing, first_write, second_write

    before_writing, first_write, second_write = await db.retrying_unit(work)
    assert before_writing == loop_thread
    assert first_write == loop_thread  # the write lock was free: taken at once, no busy handler
    assert second_write == loop_thread  # the lock is held: nothing can make it wait
    async with db.transaction() as session:  # both committed
        assert (await session.exec(sql_text("SELECT count(*) FROM t"))).scalar_one() == 2  # type: ignore[call-overload]


async def test_other_transactions_run_every_statement_on_aiosqlites_thread(db: Database) -> None:
    loop_thread = threading.get_ident()
    async with db.transaction() as session:
        assert await ran_on(session) != loop_thread
        await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")
        assert await ran_on(session, "INSERT INTO t (n) VALUES (thread_id()) RETURNING n") != loop_thread


async def test_a_new_transaction_takes_the_write_lock_again_without_waiting_on_the_loop(
    db: Database, tmp_path: Path
) -> None:
    """After a commit, and after a rollback, the next transaction's first write is a first write
    again: busy handler off inline, so another process holding the lock makes it wait off the
    loop (a flag left over from the last transaction would let it sleep on the loop's thread)."""
    async with db.transaction(inline=True) as session:
        await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")
    with pytest.raises(ZeroDivisionError):
        async with db.transaction(inline=True) as session:
            await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")
            raise ZeroDivisionError
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)

    async def write() -> None:
        async with db.transaction(inline=True) as session:
            await ran_on(session, "INSERT INTO t (n) VALUES (3) RETURNING n")

    for _ in range(2):
        other.execute("BEGIN IMMEDIATE")  # another process writes
        async with ticking() as ticks:
            writing = asyncio.create_task(write())
            await asyncio.sleep(0.2)
            assert not writing.done() and ticks[0] >= 5  # waiting, but not on the loop
            other.execute("COMMIT")
            await asyncio.wait_for(writing, 10)
    other.close()


async def test_a_unit_waiting_for_another_processs_write_lock_does_not_stall_the_loop(
    db: Database, tmp_path: Path
) -> None:
    other = sqlite3.connect(tmp_path / "inline.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process writes
    other.execute("INSERT INTO t (n) VALUES (0)")

    async def work(session: AsyncSession) -> None:
        await ran_on(session)  # inline read: a reader never waits in WAL mode
        await ran_on(session, "INSERT INTO t (n) VALUES (1) RETURNING n")
        await ran_on(session, "INSERT INTO t (n) VALUES (2) RETURNING n")

    async with ticking() as ticks:
        unit = asyncio.create_task(db.retrying_unit(work))
        await asyncio.sleep(0.3)
        assert not unit.done()  # waiting for the lock...
        assert ticks[0] >= 10  # ...while the loop goes on
        other.execute("COMMIT")
        await asyncio.wait_for(unit, 10)
    other.close()
    async with db.transaction() as session:
        rows = (await session.exec(sql_text("SELECT n FROM t ORDER BY n"))).scalars().all()  # type: ignore[call-overload]
    assert rows == [0, 1, 2]


async def test_a_read_the_file_refuses_inline_waits_off_the_loop(tmp_path: Path) -> None:
    """Readers do not wait in WAL mode, except when the file is locked all the same (another
    connection in exclusive locking mode, WAL recovery): then the read runs again on aiosqlite's
    thread, where SQLite's busy handler may sleep, and the loop goes on."""
    path = tmp_path / "locked.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("PRAGMA journal_mode=WAL")
    setup.execute("CREATE TABLE t (n INTEGER)")
    setup.close()
    connection = await inline_sqlite.connect(str(path))
    cursor = await connection.cursor()
    await cursor.execute("PRAGMA busy_timeout=5000")
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("PRAGMA locking_mode=EXCLUSIVE")
    other.execute("BEGIN IMMEDIATE")
    other.execute("INSERT INTO t (n) VALUES (7)")
    other.execute("COMMIT")  # exclusive mode: the file stays locked until the connection closes

    async def read() -> list[Any]:
        with inline_statements():
            await cursor.execute("SELECT n FROM t")
            return list(await cursor.fetchall())

    async with ticking() as ticks:
        reading = asyncio.create_task(read())
        await asyncio.sleep(0.3)
        assert not reading.done() and ticks[0] >= 10  # waiting for the lock, but not on the loop
        other.close()
        assert [tuple(row) for row in await asyncio.wait_for(reading, 10)] == [(7,)]
    await connection.close()


async def test_a_transaction_opened_inside_a_hot_unit_runs_on_aiosqlites_thread(db: Database) -> None:
    """A composer or a report may open its own transaction from inside a dispatch round: its
    statements may be long, so they do not inherit the round's inline statements."""
    loop_thread = threading.get_ident()
    async with db.transaction(inline=True) as session:
        assert await ran_on(session) == loop_thread
        async with db.transaction() as inner:
            assert await ran_on(inner) != loop_thread
        assert await ran_on(session) == loop_thread
