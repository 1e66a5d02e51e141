"""Group commits on SQLite (issue 20; storage/hot_session.py): a unit whose every effect outside the
process waits for a later durable commit commits without waiting for the disk, and the commit
thread flushes the write-ahead log for all such units within a bound, at the latest when the
database closes.

SQLite's own flushes happen in C and cannot be seen from here; the flush that group commits owe
is ``os.fsync`` of the WAL file, which a spy records (the file it flushed, read back from
``/proc``, and the thread). Which commits were durable is read from SQLAlchemy's commit events on
the durable engines."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy import text as sql_text
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.db import Database
from tests.harness import Harness

pytestmark = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="reads open files from /proc")


@dataclass
class Flushes:
    """The files ``os.fsync`` flushed, and on which threads; ``fail``: the next ones raise."""

    paths: list[str] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    fail: int = 0


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> Flushes:
    seen = Flushes()
    fsync = os.fsync

    def spy(descriptor: int) -> None:
        if seen.fail:
            seen.fail -= 1
            raise OSError(5, "Input/output error")
        seen.paths.append(os.readlink(f"/proc/self/fd/{descriptor}"))
        seen.threads.append(threading.get_ident())
        fsync(descriptor)

    monkeypatch.setattr(os, "fsync", spy)
    return seen


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/group.db")
    async with database.transaction() as session:
        await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    yield database
    await database.close()


def wal(db: Database) -> str:
    assert db.path is not None
    return str(db.path.resolve()) + "-wal"


@contextmanager
def durable_commits(db: Database) -> Iterator[list[object]]:
    """Commits on the engines whose commits wait for the disk, while the block runs."""
    seen: list[object] = []

    def committed(connection: object) -> None:
        seen.append(connection)

    engines = db.sync_engines(relaxed=False)
    for engine in engines:
        event.listen(engine, "commit", committed)
    try:
        yield seen
    finally:
        for engine in engines:
            event.remove(engine, "commit", committed)


async def insert(db: Database, n: int, *, group_commit: bool = True) -> None:
    async def work(session: AsyncSession) -> None:
        await session.exec(sql_text(f"INSERT INTO t VALUES ({n})"))  # type: ignore[call-overload]

    await db.retrying_unit(work, group_commit=group_commit)


async def until(condition: Callable[[], object], within: float = 5.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_a_group_commit_leaves_the_flush_to_the_thread_within_the_bound(
    db: Database, flushes: Flushes
) -> None:
    assert db._hot is not None
    db._hot.group_commit_seconds = 0.2
    with durable_commits(db) as durable:
        await insert(db, 1)
    assert durable == [], "the unit did not wait for the disk"
    assert flushes.paths == [] and db._hot.owed == 1
    await until(lambda: flushes.paths)
    assert flushes.paths == [wal(db)]
    assert flushes.threads != [threading.get_ident()], "the flush runs off the loop"
    assert db._hot.owed == 0
    async with db.transaction() as session:
        assert (await session.exec(sql_text("SELECT n FROM t"))).scalars().all() == [1]  # type: ignore[call-overload]


async def test_group_commits_within_the_bound_share_one_flush(db: Database, flushes: Flushes) -> None:
    assert db._hot is not None
    db._hot.group_commit_seconds = 0.3
    for n in range(5):
        await insert(db, n)
    assert db._hot.owed == 5
    await until(lambda: db._hot is not None and db._hot.owed == 0)
    assert flushes.paths == [wal(db)]
    await asyncio.sleep(0.5)
    assert flushes.paths == [wal(db)], "nothing owed: no second flush"
    await insert(db, 9)
    await until(lambda: len(flushes.paths) == 2)


async def test_a_durable_unit_owes_no_flush(db: Database, flushes: Flushes) -> None:
    assert db._hot is not None
    with durable_commits(db) as durable:
        await insert(db, 1, group_commit=False)
    assert len(durable) == 1
    assert db._hot.owed == 0
    await db.flush_group_commits()
    assert flushes.paths == []


async def test_flushing_now_and_closing_put_what_is_owed_on_the_disk(
    tmp_path: Path, flushes: Flushes
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/group.db")
    async with db.transaction() as session:
        await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    assert db._hot is not None
    db._hot.group_commit_seconds = 3600
    await insert(db, 1)
    await db.flush_group_commits()
    assert flushes.paths == [wal(db)] and db._hot.owed == 0
    await insert(db, 2)
    path = wal(db)
    await db.close()
    assert flushes.paths == [path, path]


async def test_a_failed_flush_is_logged_and_tried_again(
    db: Database, flushes: Flushes, caplog: pytest.LogCaptureFixture
) -> None:
    assert db._hot is not None
    db._hot.group_commit_seconds = 0.05
    flushes.fail = 1
    with caplog.at_level(logging.WARNING, logger="storage.hot_session"):
        await insert(db, 1)
        await until(lambda: flushes.paths)
    assert "flushing the database's write-ahead log to disk failed" in caplog.text
    assert flushes.paths == [wal(db)] and db._hot.owed == 0


async def test_a_flush_asked_for_fails_loudly_and_stays_owed(db: Database, flushes: Flushes) -> None:
    assert db._hot is not None
    db._hot.group_commit_seconds = 3600
    await insert(db, 1)
    flushes.fail = 1
    with pytest.raises(OSError):
        await db.flush_group_commits()
    assert db._hot.owed == 1
    await db.flush_group_commits()
    assert db._hot.owed == 0 and flushes.paths == [wal(db)]


async def test_where_commits_are_always_durable_a_group_commit_is_a_commit() -> None:
    db = Database("sqlite+aiosqlite://")  # in memory: the asyncio session, no hot unit
    try:
        async with db.transaction() as session:
            await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
        await insert(db, 1)
        await db.flush_group_commits()
        async with db.transaction() as session:
            assert (await session.exec(sql_text("SELECT n FROM t"))).scalars().all() == [1]  # type: ignore[call-overload]
    finally:
        await db.close()


# -- which units are group commits ------------------------------------------------------------


@dataclass(frozen=True)
class Commit:
    by_handler: bool  # an inbound handler's (else the dispatcher's, after it)
    durable: bool  # waited for the disk


@contextmanager
def hot_commits(sim: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Commit]]:
    """The hot units' commits in order while the block runs: the inbound handlers' and the
    dispatcher's that follow them (the harness's reads use the asyncio session: not counted)."""
    hot = sim.bot.db._hot
    assert hot is not None
    seen: list[Commit] = []
    active = [False]

    def listener(durable: bool) -> Callable[[object], None]:
        def on_commit(_connection: object) -> None:
            seen.append(Commit(active[0], durable))

        return on_commit

    def during(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            active[0] = True
            try:
                return await handler(*args, **kwargs)
            finally:
                active[0] = False

        return run

    listeners = [(hot.durable, listener(True)), (hot.relaxed, listener(False))]
    for engine, on_commit in listeners:
        event.listen(engine, "commit", on_commit)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sim.bot, "customer_wrote", during(sim.bot.customer_wrote))
            patch.setattr(sim.bot.welcome, "on_friend_request", during(sim.bot.welcome.on_friend_request))
            yield seen
    finally:
        for engine, on_commit in listeners:
            event.remove(engine, "commit", on_commit)


def handlers(commits: list[Commit]) -> list[bool]:
    """Whether each of the handlers' commits was durable."""
    return [commit.durable for commit in commits if commit.by_handler]


async def test_a_customers_text_is_a_group_commit_and_an_opt_out_is_durable(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A text's replies and console messages go out only after the dispatcher's durable
    reservation, which follows the text's unit in the same WAL, so its flush covers that unit;
    an opt-out waits for the disk itself."""
    hot = sim.bot.db._hot
    if hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    await sim.with_customers(("c1", "张三"), ("c2", "李四"))
    await sim.advance(timedelta(minutes=5))
    owed = hot.owed
    with hot_commits(sim, monkeypatch) as commits:
        await sim.customer_says("c1", "收到，谢谢")
    assert handlers(commits) == [False] and hot.owed == owed + 1
    sent = len(sim.sent("suggestion", "console"))
    with hot_commits(sim, monkeypatch) as commits:
        await sim.customer_says("c1", "太贵了")
    assert len(sim.sent("suggestion", "console")) == sent + 1
    assert commits[0] == Commit(by_handler=True, durable=False)
    assert Commit(by_handler=False, durable=True) in commits[1:], "the reservation waited for the disk"
    owed = hot.owed
    with hot_commits(sim, monkeypatch) as commits:
        await sim.customer_says("c2", "以后别再给我发消息了")
    assert handlers(commits) == [True] and hot.owed == owed
    assert (await sim.customer("c2")).paused_at is not None


async def test_a_friend_request_is_recorded_durably_and_befriended_in_a_group_commit(
    sim: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The request is on the disk before the accept (a machine's crash after it is finished by
    reconcile at the next start); the customer and the welcome, recorded after the accept, are a
    group commit. A confirmation has no earlier record: it is durable."""
    hot = sim.bot.db._hot
    if hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    owed = hot.owed
    with hot_commits(sim, monkeypatch) as commits:
        await sim.friend_request("c9", "王五", "朋友推荐的")
    assert handlers(commits) == [True, False] and hot.owed == owed + 1
    assert (await sim.customer("c9")).welcome_planned_at is not None
    with hot_commits(sim, monkeypatch) as commits:
        await sim.friendship_confirmed("c8", "赵六")
    assert handlers(commits) == [True]
    assert (await sim.customer("c8")).welcome_planned_at is not None
