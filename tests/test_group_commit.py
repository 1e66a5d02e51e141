"""Group commits on SQLite (issue 20; storage/group_commit.py): a unit whose every effect outside
the process waits for a later durable commit commits without waiting for the disk, and the bot
flushes the write-ahead log for all such units a moment later, at the latest when it closes.

SQLite's own flushes happen in C and cannot be seen from here; the flush group commits owe is
``fdatasync`` (``fsync``) of the WAL file, which a spy records (the file, from a spy on
``os.open``, and the thread). Which commits were durable is read from SQLAlchemy's commit events
on the hot engines."""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from sqlalchemy import event
from sqlalchemy import text as sql_text
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.web.app import create_app
from storage.db import Database
from storage.group_commit import FlushFailed, WalFlusher, must_reach_disk
from tests.harness import Harness


@dataclass
class Flushes:
    """The files flushed to the disk through ``os`` (SQLite's own flushes are not seen), the
    threads that flushed them and when; ``fail``: that many next flushes fail."""

    paths: list[str] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    folders: list[str] = field(default_factory=list)
    fail: int = 0


@pytest.fixture
def flushes(monkeypatch: pytest.MonkeyPatch) -> Flushes:
    seen = Flushes()
    opened: dict[int, str] = {}
    real_open = os.open

    def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
        descriptor = real_open(path, flags, *args, **kwargs)
        opened[descriptor] = str(path)
        return descriptor

    def spy(real: Callable[[int], None]) -> Callable[[int], None]:
        def flush(descriptor: int) -> None:
            if seen.fail:
                seen.fail -= 1
                raise OSError(5, "Input/output error")
            path = opened.get(descriptor, "?")
            if os.path.isdir(path):  # the WAL's folder, flushed once when it is first opened
                seen.folders.append(path)
                return real(descriptor)
            seen.paths.append(path)
            seen.threads.append(threading.get_ident())
            seen.times.append(time.monotonic())
            real(descriptor)

        return flush

    monkeypatch.setattr(os, "open", spy_open)
    monkeypatch.setattr(os, "fsync", spy(os.fsync))
    if hasattr(os, "fdatasync"):
        monkeypatch.setattr(os, "fdatasync", spy(os.fdatasync))
    return seen


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite+aiosqlite:///{tmp_path}/group.db")
    async with database.transaction() as session:
        await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    yield database
    await database.close()


def flusher(db: Database) -> WalFlusher:
    assert db._hot is not None
    return db._hot.flusher


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


async def insert(db: Database, n: int, *, group_commit: bool = True, reach_disk: bool = False) -> None:
    async def work(session: AsyncSession) -> None:
        await session.exec(sql_text(f"INSERT INTO t VALUES ({n})"))  # type: ignore[call-overload]
        if reach_disk:
            must_reach_disk(session)

    await db.retrying_unit(work, group_commit=group_commit)


async def numbers(db: Database) -> list[int]:
    async with db.transaction() as session:
        return list((await session.exec(sql_text("SELECT n FROM t ORDER BY n"))).scalars().all())  # type: ignore[call-overload]


async def until(condition: Callable[[], object], within: float = 10.0) -> None:
    async with asyncio.timeout(within):
        while True:
            if condition():
                return
            await asyncio.sleep(0.01)


async def test_a_group_commit_is_flushed_by_the_thread_once_the_moment_has_passed(
    db: Database, flushes: Flushes
) -> None:
    flusher(db).seconds = 0.3
    before = time.monotonic()
    with durable_commits(db) as durable:
        await insert(db, 1)
    assert durable == [], "the unit did not wait for the disk"
    assert flushes.paths == [] and flusher(db).owed == 1
    await until(lambda: flusher(db).owed == 0)
    assert flushes.paths == [wal(db)]
    assert flushes.folders == [str(Path(wal(db)).parent)], "the new WAL's name is on the disk too"
    assert flushes.times[0] - before >= 0.29, "the flush waited for others to share it"
    assert flushes.threads != [threading.get_ident()], "the flush runs off the loop"
    assert flusher(db).owed == 0
    assert await numbers(db) == [1]


async def test_group_commits_of_a_moment_share_one_flush(db: Database, flushes: Flushes) -> None:
    flusher(db).seconds = 0.3
    for n in range(5):
        await insert(db, n)
    assert flusher(db).owed == 5
    await until(lambda: flusher(db).owed == 0)
    assert flushes.paths == [wal(db)]
    await asyncio.sleep(0.5)
    assert flushes.paths == [wal(db)], "nothing owed: no second flush"
    await insert(db, 9)
    await until(lambda: len(flushes.paths) == 2)


async def test_a_unit_that_wrote_nothing_owes_no_flush(db: Database, flushes: Flushes) -> None:
    """A replayed message finds its record and writes nothing: nothing to flush for it."""
    flusher(db).seconds = 3600

    async def read_only(session: AsyncSession) -> None:
        await session.exec(sql_text("SELECT count(*) FROM t"))  # type: ignore[call-overload]

    await db.retrying_unit(read_only, group_commit=True)
    assert flusher(db).owed == 0
    await insert(db, 1, group_commit=False)  # durable: SQLite flushed it itself
    assert flusher(db).owed == 0
    await db.flush_group_commits()
    assert flushes.paths == []


async def test_a_durable_commit_is_not_counted_as_the_flush_group_commits_owe(
    db: Database, flushes: Flushes
) -> None:
    """SQLite's own flush does cover them when it writes, but an update that changes no byte
    writes nothing: the flusher never counts on it."""
    flusher(db).seconds = 3600
    await insert(db, 1)
    await insert(db, 2, group_commit=False)
    assert flusher(db).owed == 1
    await db.flush_group_commits()
    assert flushes.paths == [wal(db)] and flusher(db).owed == 0


@pytest.fixture
def fast_disk(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    """Flushes count as fast, whatever this machine's disk does meanwhile."""
    assert db._hot is not None
    monkeypatch.setattr(db._hot, "clock", lambda: 0.0)
    monkeypatch.setattr(db._hot, "flush_on_thread_until", 0.0)


@pytest.mark.usefixtures("fast_disk")
async def test_a_unit_that_must_reach_the_disk_is_flushed_on_the_loop_before_it_returns(
    db: Database, flushes: Flushes
) -> None:
    flusher(db).seconds = 3600
    await insert(db, 1)
    await insert(db, 2, reach_disk=True)
    assert flushes.paths == [wal(db)] and flushes.threads == [threading.get_ident()]
    assert flusher(db).owed == 0, "the one flush covered the group commit before it too"
    await insert(db, 3)
    assert flusher(db).owed == 1


async def test_once_the_disk_was_slow_a_unit_that_must_reach_it_is_flushed_off_the_loop(
    db: Database, flushes: Flushes, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even with nothing else owed and no flush under way, it waits for a flush of its own."""
    assert db._hot is not None
    monkeypatch.setattr(db._hot, "flush_on_thread_until", math.inf)
    flusher(db).seconds = 3600
    await insert(db, 1, reach_disk=True)
    assert flushes.paths == [wal(db)] and flushes.threads != [threading.get_ident()]
    assert flusher(db).owed == 0


async def test_flushing_now_and_closing_put_what_is_owed_on_the_disk(
    tmp_path: Path, flushes: Flushes
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path}/group.db")
    async with db.transaction() as session:
        await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
    flusher(db).seconds = 3600
    await insert(db, 1)
    await db.flush_group_commits()
    assert flushes.paths == [wal(db)] and flusher(db).owed == 0
    await insert(db, 2)
    path = wal(db)
    await db.close()
    assert flushes.paths == [path, path]


async def test_a_failed_flush_ends_group_commits_and_is_never_taken_for_a_success(
    db: Database, flushes: Flushes, caplog: pytest.LogCaptureFixture
) -> None:
    """After a failed fsync the kernel may have dropped the pages it could not write: a retry
    that succeeds proves nothing, so what was owed stays owed and every later commit waits for
    the disk itself."""
    flusher(db).seconds = 0.05
    flushes.fail = 1
    with caplog.at_level(logging.ERROR, logger="storage.group_commit"):
        await insert(db, 1)
        await until(lambda: flusher(db).failed is not None)
    assert "no unit skips the wait for the disk" in caplog.text
    assert flusher(db).owed == 1
    with pytest.raises(FlushFailed):
        await db.flush_group_commits()
    with durable_commits(db) as durable:
        await insert(db, 2)
    assert len(durable) == 1 and flusher(db).owed == 1
    await asyncio.sleep(0.2)
    assert flushes.paths == [], "no retry"
    assert await numbers(db) == [1, 2]


async def test_where_commits_are_always_durable_a_group_commit_is_a_commit() -> None:
    db = Database("sqlite+aiosqlite://")  # in memory: the asyncio session, no hot unit
    try:
        async with db.transaction() as session:
            await session.exec(sql_text("CREATE TABLE t (n INTEGER)"))  # type: ignore[call-overload]
        await insert(db, 1)
        await db.flush_group_commits()
        assert await numbers(db) == [1]
    finally:
        await db.close()


# -- which units are group commits ------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    what: str  # "durable" or "relaxed" (a hot unit's commit, by its engine), or "send"
    by_handler: bool  # during an inbound handler (else the dispatcher's, after it)


@contextmanager
def steps(sim: Harness, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Step]]:
    """The hot units' commits and the sends, in order, while the block runs (the harness's reads
    use the asyncio session: not counted). No flush is left to the timer meanwhile."""
    hot = sim.bot.db._hot
    assert hot is not None
    hot.flusher.seconds = 3600
    seen: list[Step] = []
    monkeypatch.setattr(hot, "clock", lambda: 0.0)  # flushes count as fast: on the loop
    monkeypatch.setattr(hot, "flush_on_thread_until", 0.0)
    active = [False]

    def listener(what: str) -> Callable[[object], None]:
        def on_commit(_connection: object) -> None:
            seen.append(Step(what, active[0]))

        return on_commit

    def during(handler: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        async def run(*args: Any, **kwargs: Any) -> Any:
            active[0] = True
            try:
                return await handler(*args, **kwargs)
            finally:
                active[0] = False

        return run

    messenger = sim.bot.dispatcher.messenger
    transmit = messenger.transmit

    async def transmitted(*args: Any, **kwargs: Any) -> Any:
        seen.append(Step("send", active[0]))
        return await transmit(*args, **kwargs)

    listeners = [(hot.durable, listener("durable")), (hot.relaxed, listener("relaxed"))]
    for engine, on_commit in listeners:
        event.listen(engine, "commit", on_commit)
    try:
        with monkeypatch.context() as patch:
            patch.setattr(sim.bot, "customer_wrote", during(sim.bot.customer_wrote))
            patch.setattr(sim.bot.welcome, "on_friend_request", during(sim.bot.welcome.on_friend_request))
            patch.setattr(messenger, "transmit", transmitted)
            yield seen
    finally:
        for engine, on_commit in listeners:
            event.remove(engine, "commit", on_commit)


def handlers(seen: list[Step]) -> list[str]:
    """The inbound handlers' commits."""
    return [step.what for step in seen if step.by_handler and step.what != "send"]


def owed(sim: Harness) -> int:
    hot = sim.bot.db._hot
    assert hot is not None
    return hot.flusher.owed


async def test_a_customers_text_is_a_group_commit_flushed_before_anything_it_sends(
    sim: Harness, monkeypatch: pytest.MonkeyPatch, flushes: Flushes
) -> None:
    """A text's replies and console messages go out only after the dispatcher's durable
    reservation, which follows the text's unit in the same WAL: its flush covers that unit."""
    if sim.bot.db._hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    sim.bot.db._hot.flusher.seconds = 3600  # no timer flushes meanwhile
    await sim.with_customers(("c1", "张三"))
    await sim.customer_says("c1", "你好")
    await sim.advance(timedelta(minutes=5))
    flushed = len(flushes.paths)
    with steps(sim, monkeypatch) as seen:
        owing = owed(sim)
        await sim.customer_says("c1", "收到，谢谢")
    assert handlers(seen) == ["relaxed"] and owed(sim) == owing + 1
    assert "send" not in [step.what for step in seen]
    with steps(sim, monkeypatch) as seen:
        await sim.customer_says("c1", "太贵了")
    assert handlers(seen) == ["relaxed"]
    assert sim.sent("suggestion", "console"), "the objection's suggestion went out"
    whats = [step.what for step in seen]
    first_send = whats.index("send")
    assert "durable" in whats[1:first_send], "a durable commit (the reservation) came between"
    assert len(flushes.paths) == flushed, "neither unit flushed on its own"


async def test_a_first_reply_that_drops_follow_ups_reaches_the_disk_before_it_returns(
    sim: Harness, monkeypatch: pytest.MonkeyPatch, flushes: Flushes
) -> None:
    """A machine's crash must not bring back a follow-up the customer's reply cancelled."""
    if sim.bot.db._hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    sim.bot.db._hot.flusher.seconds = 3600  # no timer flushes meanwhile
    await sim.with_customers(("c1", "张三"))
    with steps(sim, monkeypatch) as seen:
        await sim.customer_says("c1", "你好")
    assert handlers(seen) == ["relaxed"]
    assert len(flushes.paths) == 1 and owed(sim) == 0, "flushed at once, owing nothing"
    await sim.advance(timedelta(days=8))
    assert sim.sent("followup", "c1") == []


async def test_an_opt_out_waits_for_the_disk(sim: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    if sim.bot.db._hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    await sim.with_customers(("c1", "张三"))
    await sim.customer_says("c1", "你好")
    with steps(sim, monkeypatch) as seen:
        await sim.customer_says("c1", "以后别再给我发消息了")
    assert handlers(seen) == ["durable"]
    assert (await sim.customer("c1")).paused_at is not None


async def test_a_friend_request_is_recorded_durably_and_befriended_in_a_group_commit(
    sim: Harness, monkeypatch: pytest.MonkeyPatch, flushes: Flushes
) -> None:
    """The request is on the disk before the accept (a machine's crash after it is finished by
    reconcile at the next start); the customer and the welcome, recorded after the accept, are a
    group commit. A friendship confirmed on the phone has no earlier record: it reaches the disk
    before its unit returns."""
    if sim.bot.db._hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    with steps(sim, monkeypatch) as seen:
        owing = owed(sim)
        await sim.friend_request("c9", "王五", "朋友推荐的")
    assert handlers(seen) == ["durable", "relaxed"] and owed(sim) == owing + 1
    assert flushes.paths == []
    assert (await sim.customer("c9")).welcome_planned_at is not None
    with steps(sim, monkeypatch) as seen:
        await sim.friendship_confirmed("c8", "赵六")
    assert handlers(seen) == ["relaxed"] and owed(sim) == 0, "flushed at once, with what was owed"
    assert len(flushes.paths) == 1
    assert (await sim.customer("c8")).welcome_planned_at is not None


async def test_the_dashboard_and_the_api_show_only_what_is_on_the_disk(
    sim: Harness, flushes: Flushes
) -> None:
    if sim.bot.db._hot is None:
        pytest.skip("PostgreSQL commits are always durable")
    sim.bot.db._hot.flusher.seconds = 3600
    await sim.with_customers(("c1", "张三"))
    await sim.customer_says("c1", "你好")
    await sim.customer_says("c1", "在吗")
    assert sim.bot.db._hot.flusher.owed >= 1
    async with TestClient(
        TestServer(create_app(sim.bot.reports, token="t", token_for_reads=False))
    ) as client:
        assert (await client.get("/healthz")).status == 200
        assert sim.bot.db._hot.flusher.owed >= 1, "a probe shows no data: it waits for no flush"
        response = await client.get("/api/customers")
        assert response.status == 200
    assert sim.bot.db._hot.flusher.owed == 0
