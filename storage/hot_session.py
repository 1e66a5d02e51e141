"""Hot units of work on SQLite: synchronous SQLAlchemy on the event loop's thread.

An inbound event's unit of work and a dispatch round run a handful of short statements. Through
the asyncio session each statement costs a greenlet switch per driver call and a hop to
aiosqlite's thread and back, and each transaction several more: together several times the
statements' own work (issue 20). Here such a unit runs on a plain synchronous :class:`Session`
over a sqlite3 connection of its own, on the loop's thread, behind an :class:`AsyncSession`'s
face (the services' code does not change):

- the transaction starts with ``BEGIN IMMEDIATE``: it holds SQLite's write lock from its first
  statement, so no statement of it can wait (WAL readers never do, and no one else may write).
  Only the ``BEGIN`` may find the file locked (another process writes: a backup, a second
  salesbot): it is tried at once with SQLite's busy handler off, and, refused, waits on the
  commit thread, where the busy handler may sleep without stalling the loop;
- a durable commit (synchronous FULL) waits for the disk's flush. While flushes are fast it runs
  on the loop: a hop to a thread and back costs about 250 us of CPU on a virtual machine (two
  context switches, the wake-ups between cores, the loop's wake-up), paid by every event, while a
  flush of a few milliseconds delays the other events by as much, which nobody in a chat can
  notice (5 ms, not 1 ms: on a virtual disk that flushes in 1-3 ms, bench/hot_path.py measured
  10-14% less CPU an event; README, the fourth session). A flush slower than
  :data:`SLOW_FLUSH_SECONDS` (a spinning disk, a congested network volume) moves durable commits
  to the thread until none has been slow for
  :data:`SLOW_FLUSH_BACKOFF_SECONDS` (a slow disk stalls the loop once); a relaxed commit
  (synchronous NORMAL: no wait for the disk) always runs on the loop. No commit checkpoints the
  WAL (SQLite's automatic checkpoint would run inside it, on the loop): a passive checkpoint runs
  on the thread every :data:`CHECKPOINT_EVERY` commits;
- a group commit (``HotEngines.commit(group=True)``) is a relaxed commit whose flush to the disk
  comes a moment later, shared with the others of that moment (storage/group_commit.py);
- this process runs one transaction at a time on SQLite (``Database._writer``): the connections
  are never used by two units at once. A hot transaction opened inside another of the same task
  is refused (it would wait for the write lock its own task holds);
- whatever ends the unit (a commit, a rollback, a failed commit), its connection leaves no
  transaction open: SQLAlchemy forgets a transaction whose COMMIT failed, SQLite does not.

PostgreSQL and SQLite in memory keep the asyncio session: the same services' code either way.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import StaticPool
from sqlmodel import Session
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.group_commit import FlushFailed, WalFlusher, reaches_disk, wal_path

T = TypeVar("T")

log = logging.getLogger(__name__)

_BUSY = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class HotSession(AsyncSession):
    """An :class:`AsyncSession` whose statements run at once on the calling thread, through its
    synchronous ``sync_session`` (see the module's docstring). Only :class:`HotEngines` makes
    one, inside a transaction it began; the unit's owner commits or rolls it back. Results are
    buffered, as the asyncio session's are: no cursor outlives its call."""

    _hot_bind: AsyncEngine
    raw: sqlite3.Connection | None = None  # the connection its BEGIN ran on
    changes = 0  # the connection's total_changes at that BEGIN (did the unit write?)

    async def exec(self, statement: Any, *, execution_options: Any = None, **kwargs: Any) -> Any:
        options = _BUFFERED if not execution_options else {**execution_options, **_BUFFERED}
        return self.sync_session.exec(statement, execution_options=options, **kwargs)

    async def execute(
        self, statement: Any, params: Any = None, *, execution_options: Any = None, **kwargs: Any
    ) -> Any:
        options = _BUFFERED if not execution_options else {**execution_options, **_BUFFERED}
        return self.sync_session.execute(statement, params, execution_options=options, **kwargs)

    async def get(self, entity: Any, ident: Any, **kwargs: Any) -> Any:
        return self.sync_session.get(entity, ident, **kwargs)

    async def flush(self, objects: Any = None) -> None:
        self.sync_session.flush(objects)

    async def connection(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("a hot unit's statements go through exec(); it has no asyncio connection")

    @property
    def bind(self) -> AsyncEngine:  # the asyncio engine of the same file (its dialect)
        return self._hot_bind

    @bind.setter
    def bind(self, bind: Any) -> None:
        self._hot_bind = bind


_BUFFERED = {"prebuffer_rows": True}
# a durable commit that took longer (the disk's flush) moves durable commits off the loop for a while
SLOW_FLUSH_SECONDS = 0.005
SLOW_FLUSH_BACKOFF_SECONDS = 60.0
CHECKPOINT_EVERY = 200  # hot commits between WAL checkpoints (a unit writes a few pages)


class HotEngines:
    """The hot units' two synchronous engines over one SQLite file (durable and relaxed
    commits), each with one connection, and the thread their waits (and slow durable commits) run on.
    ``connect_args``: what SQLAlchemy's dialect would pass to ``sqlite3.connect`` for the URL."""

    def __init__(
        self, connect_args: tuple[list[Any], dict[str, Any]], async_engine: AsyncEngine, busy_timeout_ms: int
    ) -> None:
        self.connect_args = connect_args
        self.async_engine = async_engine  # what the sessions report as their bind
        self.busy_timeout_ms = busy_timeout_ms
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salesbot-sqlite-commit")
        self._holder: asyncio.Task[Any] | None = None  # the task whose unit holds a connection
        self.clock = time.perf_counter  # fine-grained on every platform (monotonic is not)
        self.flush_on_thread_until = 0.0  # durable commits run on the thread until then (clock)
        self.durable = self._engine(synchronous="FULL")
        self.relaxed = self._engine(synchronous="NORMAL")
        # commits run on the loop, so neither connection checkpoints the WAL (SQLite's automatic
        # checkpoint runs inside a COMMIT and waits for the disk): every CHECKPOINT_EVERY commits
        # a connection of the thread's own does, in the background
        self.checkpoint_every = CHECKPOINT_EVERY
        self._commits = 0
        self._checkpointer: sqlite3.Connection | None = None  # used on the thread only
        self.flusher = WalFlusher()  # what group commits owe the disk

    def _engine(self, *, synchronous: str) -> Engine:
        def connect() -> sqlite3.Connection:
            return loop_connection(self.connect_args, synchronous=synchronous)

        # one connection, kept (StaticPool); no rollback when it goes back: release() ends the unit
        return sa.create_engine("sqlite://", creator=connect, poolclass=StaticPool, pool_reset_on_return=None)

    @property
    def engines(self) -> tuple[Engine, Engine]:
        return self.durable, self.relaxed

    def session(self, *, durable: bool) -> HotSession:
        """A session on the durable or the relaxed connection, for this task's unit. A second one
        in the same task is refused: its BEGIN would wait for the lock the first one holds."""
        if self._holder is not None:  # Database._writer lets only the holder's own task through
            raise RuntimeError("a hot transaction cannot open inside another one of the same task")
        self._holder = asyncio.current_task()
        engine = self.durable if durable else self.relaxed
        session = HotSession(sync_session_class=partial(_sync_session, engine))  # type: ignore[arg-type]
        session.bind = self.async_engine
        return session

    async def begin(self, session: HotSession) -> None:
        """``BEGIN IMMEDIATE`` on the session's connection: at once when the file's write lock is
        free, else waiting for it on the thread (SQLite's busy handler on)."""
        connection = session.sync_session.connection()  # SQLAlchemy's transaction: no statement
        raw = connection.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        session.raw = raw
        if self.flusher.path is None:
            self.flusher.path = wal_path(raw)
        session.changes = raw.total_changes
        try:
            raw.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.Error as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF not in _BUSY:
                raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from None
        await self.on_thread(partial(_begin_waiting, raw, self.busy_timeout_ms))

    async def commit(self, session: HotSession, *, durable: bool, group: bool = False) -> None:
        """Commit on the loop, or (durable, the disk found slow) on the thread. Every durable
        flush is timed, wherever it runs and however it ends: a slow one keeps durable commits
        on the thread for SLOW_FLUSH_BACKOFF_SECONDS more, so a slow disk stalls the loop once.
        ``group`` (not durable): a group commit, flushed a moment later with the others, or at
        once, as a durable one, when the unit called ``must_reach_disk``."""
        sync = session.sync_session
        sync.flush()  # on the loop: the statements hold the lock already
        try:
            if not durable:
                flush_now = group and reaches_disk(session)
                sync.commit()
                if group and session.raw is not None and session.raw.total_changes > session.changes:
                    self.flusher.committed()  # it wrote: the disk is owed its flush
                    if flush_now:
                        await self._flush_unit()
            elif self.clock() < self.flush_on_thread_until:
                await self.on_thread(partial(self._timed_commit, sync))
            else:
                self._timed_commit(sync)
        except (sqlite3.Error, DBAPIError) as exc:
            cause = exc.orig if isinstance(exc, DBAPIError) else exc
            if cause is not None and _io_error(cause):
                self.flusher.fail(cause)  # the disk failed a write: group commits may be lost
            raise
        finally:
            self._commits += 1
            if self._commits % self.checkpoint_every == 0:
                self._checkpoint_later()

    async def _flush_unit(self) -> None:
        """A group commit that must be on the disk before it returns (counted already): flushed
        here like a durable commit, on the loop while flushes are fast and timed the same way. A
        flush that fails ends group commits and is logged (the unit itself did commit)."""
        try:
            if self.clock() < self.flush_on_thread_until:
                await self.flusher.flush()
                return
            started = self.clock()
            try:
                self.flusher.flush_here()
            finally:
                if self.clock() - started > SLOW_FLUSH_SECONDS:
                    self.flush_on_thread_until = self.clock() + SLOW_FLUSH_BACKOFF_SECONDS
        except FlushFailed:
            pass

    def _timed_commit(self, sync: Session) -> None:
        started = self.clock()
        try:
            sync.commit()
        finally:
            if self.clock() - started > SLOW_FLUSH_SECONDS:
                self.flush_on_thread_until = self.clock() + SLOW_FLUSH_BACKOFF_SECONDS

    def _checkpoint_later(self) -> None:
        """A passive WAL checkpoint on the thread, not awaited: it neither waits for writers nor
        makes them wait, and the units go on meanwhile."""
        asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)

    def _checkpoint(self) -> None:
        try:
            if self._checkpointer is None:
                args, kwargs = self.connect_args
                self._checkpointer = sqlite3.connect(*args, **{**kwargs, "isolation_level": None})
            self._checkpointer.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except sqlite3.Error as exc:  # the next one tries again; the WAL only grows meanwhile
            log.warning("checkpointing the database's write-ahead log failed: %s", exc)
            if _io_error(exc):
                self.flusher.fail(exc)  # what group commits wrote may be gone

    def release(self, session: HotSession) -> None:
        """The unit has ended, committed or not: no transaction stays open on its connection (a
        failed COMMIT leaves SQLite's open while SQLAlchemy forgets it), and the connection goes
        back for the next unit."""
        try:
            if session.raw is not None and session.raw.in_transaction:
                session.raw.rollback()
        finally:
            session.sync_session.close()
            self._holder = None

    async def on_thread(self, work: Callable[[], T]) -> T:
        """``work`` on the commit thread. Cancelled meanwhile, it still waits for ``work`` to end
        (the connection is not the loop's to touch before), then raises the cancellation, however
        ``work`` ended."""
        future = asyncio.get_running_loop().run_in_executor(self._thread, work)
        cancelled = False
        while True:
            try:
                result = await asyncio.shield(future)
            except asyncio.CancelledError:
                if future.done():
                    raise
                cancelled = True
                continue
            except BaseException as exc:
                if cancelled:
                    raise asyncio.CancelledError from exc
                raise
            if cancelled:
                raise asyncio.CancelledError
            return result

    async def close(self) -> None:
        """Flush what group commits owe, wait for the thread's work to end (off the loop), then
        close the connections."""
        await self.flusher.close()
        await asyncio.to_thread(self._thread.shutdown)
        if self._checkpointer is not None:
            self._checkpointer.close()
        self.durable.dispose()
        self.relaxed.dispose()


def loop_connection(
    connect_args: tuple[list[Any], dict[str, Any]], *, synchronous: str
) -> sqlite3.Connection:
    """A sqlite3 connection to the URL's file (``connect_args`` as SQLAlchemy's dialect would pass
    them) for work on the loop's thread: autocommit until a BEGIN, never waiting for a lock
    (timeout and busy_timeout 0: the caller waits elsewhere), never checkpointing the WAL (the
    commit thread does: see :meth:`HotEngines.commit`), committing with ``synchronous``."""
    args, kwargs = connect_args
    options = {**kwargs, "isolation_level": None, "check_same_thread": False, "timeout": 0}
    connection: sqlite3.Connection = sqlite3.connect(*args, **options)
    pragmas = ("journal_mode=WAL", f"synchronous={synchronous}", "busy_timeout=0", "foreign_keys=ON")
    for pragma in (*pragmas, "wal_autocheckpoint=0"):
        connection.execute(f"PRAGMA {pragma}")
    return connection


# SQLITE_IOERR with no detail, and the kinds that say the disk failed to take a write or a flush
# (not memory, locks or a lost network share: those say nothing of what is on the disk)
_WRITE_FAILED = {10, 778, 1034, 1290, 1546}  # IOERR, _WRITE, _FSYNC, _DIR_FSYNC, _TRUNCATE


def _io_error(exc: BaseException) -> bool:
    """Whether SQLite reports the disk failing to take a write or a flush."""
    return isinstance(exc, sqlite3.Error) and getattr(exc, "sqlite_errorcode", 0) in _WRITE_FAILED


def _sync_session(engine: Engine, **_ignored: Any) -> Session:
    return Session(engine, expire_on_commit=False)


def _begin_waiting(raw: sqlite3.Connection, busy_timeout_ms: int) -> None:
    raw.execute(f"PRAGMA busy_timeout={busy_timeout_ms}")
    try:
        raw.execute("BEGIN IMMEDIATE")
    except sqlite3.Error as exc:  # as SQLAlchemy raises it: storage.retry reads it so
        raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from None
    finally:
        raw.execute("PRAGMA busy_timeout=0")
