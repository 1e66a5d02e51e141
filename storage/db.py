"""Engine, transactions and migrations. The same code serves SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> AlembicConfig:
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, synchronous: str = "FULL") -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit reaches the disk before it returns (a send's reservation must survive a
    # power loss). NORMAL (relaxed transactions): survives the process being killed, not a power
    # loss or an operating-system crash.
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_relaxed_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record, synchronous="NORMAL")


BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def _boot_id() -> str:
    """This machine's boot; unreadable: a value unique to this process (so never "the same")."""
    try:
        return BOOT_ID_FILE.read_text().strip() or f"unknown-{uuid.uuid4().hex}"
    except OSError:
        return f"unknown-{uuid.uuid4().hex}"


@dataclass
class _Unit:
    """The unit of work open in a task: its database, task, session, and what waits for its commit."""

    db: Database
    task: asyncio.Task[Any] | None
    session: AsyncSession
    after_commit: list[Callable[[], Awaitable[object]]] = field(default_factory=list)


_UNIT: ContextVar[_Unit | None] = ContextVar("salesbot_unit_of_work", default=None)


class Database:
    """Owns the async engine. Services open one transaction per use case with :meth:`transaction`."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        path = url.split(":///", 1)[1] if self.is_sqlite and ":///" in url else ""
        on_disk = path not in ("", ":memory:")
        if on_disk:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.engine: AsyncEngine = create_async_engine(url)
        self._relaxed_engine: AsyncEngine | None = None
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        if on_disk:  # a second pool whose connections commit without waiting for the disk
            self._relaxed_engine = create_async_engine(url)
            event.listen(self._relaxed_engine.sync_engine, "connect", _sqlite_relaxed_pragmas)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._relaxed_sessions = (
            self._sessions
            if self._relaxed_engine is None
            else async_sessionmaker(self._relaxed_engine, class_=AsyncSession, expire_on_commit=False)
        )
        # what must stay the same for relaxed commits to be as good as durable ones (see below)
        self.durability_epoch = _boot_id() if self._relaxed_engine is not None else "durable"

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (creates it on an empty database)."""
        await asyncio.to_thread(command.upgrade, alembic_config(self.url), "head")

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error.
        Inside a :meth:`unit_of_work` of this database (same task) it joins that unit instead, so
        the unit commits or rolls back as a whole."""
        unit = self._unit()
        if unit is not None:
            yield unit.session
            return
        async with self._sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def unit_of_work(self) -> AsyncIterator[AsyncSession]:
        """One transaction that every :meth:`transaction` opened in this task joins until it ends:
        several services' writes (a rep command) commit together or not at all. Other tasks are
        never joined (work they start here is not part of the unit). A unit inside a unit joins it."""
        unit = self._unit()
        if unit is not None:
            yield unit.session
            return
        async with self._sessions() as session:
            opened = _Unit(self, asyncio.current_task(), session)
            async with session.begin():
                token = _UNIT.set(opened)
                try:
                    yield session
                finally:
                    _UNIT.reset(token)
        for effect in opened.after_commit:  # committed: what waited for it may happen now
            await effect()

    def _unit(self) -> _Unit | None:
        unit = _UNIT.get()
        return unit if unit is not None and unit.db is self and unit.task is asyncio.current_task() else None

    def in_unit(self) -> bool:
        """Whether this task is inside a unit of work of this database (nothing is committed yet)."""
        return self._unit() is not None

    async def after_commit(self, effect: Callable[[], Awaitable[object]]) -> None:
        """Run ``effect`` once what this task has written is committed: now, outside a unit of
        work; when the unit commits, inside one (never, if it rolls back). For effects outside
        the database (a platform call, waking the dispatcher) that must not run on uncommitted data."""
        unit = self._unit()
        if unit is None:
            await effect()
        else:
            unit.after_commit.append(effect)

    @asynccontextmanager
    async def relaxed_transaction(self) -> AsyncIterator[AsyncSession]:
        """Like :meth:`transaction`, but on SQLite the commit does not wait for the disk: it
        survives this process being killed, not an operating-system crash or a power loss. While
        :attr:`durability_epoch` (the machine's boot) is unchanged, such commits are as good as
        durable ones. For cheap, frequent writes whose loss after a machine crash is handled
        (the dispatcher's send outcomes). PostgreSQL commits are always durable. Never inside a
        unit of work: its own connection would wait on the unit's write lock."""
        if self.in_unit():
            raise RuntimeError("a relaxed transaction cannot run inside a unit of work")
        async with self._relaxed_sessions() as session, session.begin():
            yield session

    async def close(self) -> None:
        await self.engine.dispose()
        if self._relaxed_engine is not None:
            await self._relaxed_engine.dispose()
