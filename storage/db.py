"""Engine, transactions and migrations. The same code serves SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sqlite3
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sqlalchemy import event, inspect
from sqlalchemy import text as sql_text
from sqlalchemy.engine import Dialect, Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.sql.dml import UpdateBase as Executable
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.errors import UPGRADE_FAILED, DatabaseUnavailable, SchemaUpgradeFailed
from storage.hot_session import HotEngines, loop_connection
from storage.retry import retrying

if TYPE_CHECKING:  # alembic is imported only to change or check a schema that is not the newest
    from alembic.config import Config as AlembicConfig

T = TypeVar("T")

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_REVISION = re.compile(r"""^(down_revision|revision)\b[^=]*=\s*['"]?([^'"\s]+)""", re.M)


def alembic_config(url: str) -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str | None:
    """The newest migration's revision, read from the migration files without importing alembic
    (about 8 MB a running bot would keep for nothing once its schema is the newest); None when the
    files do not show exactly one head (alembic decides then). A test compares it with alembic's."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS_DIR / "versions").glob("*.py"):
        found = dict((key, value) for key, value in _REVISION.findall(path.read_text(encoding="utf-8")))
        if "revision" not in found:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision", "None") != "None":
            parents.add(found["down_revision"])
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


async def _upgrade_apart(url: str) -> None:
    """``python -m storage.upgrade`` with ``url`` on its standard input (UTF-8, whatever the locale).
    Raises :class:`DatabaseUnavailable` with the child's one line when it refused the database, and
    :class:`SchemaUpgradeFailed` when it ended otherwise (killed, crashed) or left the schema older
    than this code's: ``-P`` keeps a ``storage`` folder in the working directory from standing in
    for this package, and the revision is read again, not taken on the child's word."""
    root = str(MIGRATIONS_DIR.parent.parent)  # where ``storage`` is, installed or not
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        "PYTHONIOENCODING": "utf-8",
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-P",
        "-m",
        "storage.upgrade",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,  # Ctrl-C stops the bot after the upgrade, not the upgrade midway
    )
    # a cancelled start still lets the upgrade finish (a half-run migration helps nobody)
    _, err = await asyncio.shield(child.communicate(url.encode("utf-8")))
    lines = err.decode("utf-8", errors="replace").splitlines()
    # the child's marked lines are written for people (URLs through safe_url); anything else is not
    said = [line[len(UPGRADE_FAILED) :] for line in lines if line.startswith(UPGRADE_FAILED)]
    if child.returncode == 2 and said:
        raise DatabaseUnavailable(said[-1])
    if child.returncode != 0:
        if not said:
            last = _without_password(lines[-1], url) if lines else "nothing on stderr"
            log.debug("the schema upgrade process ended with code %s: %s", child.returncode, last)
        raise SchemaUpgradeFailed(
            said[-1]
            if said
            else f"the database's schema could not be brought up to date (the upgrade "
            f"process ended with code {child.returncode}; salesbot run --verbose logs why)"
        )


def _without_password(text: str, url: str) -> str:
    try:
        password = make_url(url).password
    except Exception:
        return text
    return text.replace(str(password), "***") if password else text


# how long opening the database may take before it counts as unreachable
CONNECT_SECONDS = 10.0


def safe_url(url: str) -> str:
    """``url`` as people may see it: the password hidden."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url.split("://", 1)[0] + "://..."


def _reason(exc: BaseException) -> str:
    """The first line of an error's own words (an OSError's strerror), no class path or traceback."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    cause = getattr(exc, "orig", None) or exc  # SQLAlchemy wraps the driver's error
    words = str(cause).strip().splitlines()
    return words[0] if words else type(cause).__name__


# how long SQLite waits for another connection's write lock before "database is locked"; within
# this process transactions queue on ``Database._writer`` instead, so only another process or a
# backup is ever waited for here
BUSY_TIMEOUT_MS = 10_000


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, *, synchronous: str = "FULL") -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # FULL: every commit reaches the disk before it returns (a send's reservation must survive a
    # power loss). NORMAL (relaxed transactions): survives the process being killed, not a power
    # loss or an operating-system crash.
    cursor.execute(f"PRAGMA synchronous={synchronous}")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _sqlite_relaxed_pragmas(dbapi_connection: Any, record: Any) -> None:
    _sqlite_pragmas(dbapi_connection, record, synchronous="NORMAL")


BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")


def _schema_revision(connection: Any) -> str | None:
    """The schema's alembic revision, None on a database without one (empty, or not ours)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    row = connection.execute(sql_text("SELECT version_num FROM alembic_version")).first()
    return str(row[0]) if row is not None else None


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
        self.path = Path(path) if on_disk else None
        if self.path is not None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                blocked = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
                reason = f"{blocked} is a file, not a folder" if blocked is not None else _reason(exc)
                raise DatabaseUnavailable(
                    f"cannot create the folder {self.path.parent} for the database ({reason})"
                ) from None
        # SQLite: no rollback when a connection goes back to the pool. A session's transaction
        # has ended by then (committed, or rolled back by SQLAlchemy on close), so that rollback
        # did nothing but cost a hop to aiosqlite's thread, one per transaction.
        options: dict[str, Any] = {"pool_reset_on_return": None} if self.is_sqlite else {}
        try:
            self.engine: AsyncEngine = create_async_engine(url, **options)
        except ImportError as exc:
            extra = " (pip install 'salesbot[postgres]')" if "asyncpg" in str(exc) else ""
            raise DatabaseUnavailable(f"the database driver is not installed: {exc.name}{extra}") from None
        self._relaxed_engine: AsyncEngine | None = None
        # relaxed too, every statement its own transaction (autocommit): Database.relaxed_writes
        self._autocommit_engine: AsyncEngine | None = None
        self._inline: sqlite3.Connection | None = None  # see _SQLiteWriter
        # SQLite on disk: hot units (``inline=True``) run synchronously on the loop's thread
        self._hot = None
        if self.path is not None:
            connect_args = self.engine.dialect.create_connect_args(self.engine.url)
            self._hot = HotEngines(
                (list(connect_args[0]), dict(connect_args[1])), self.engine, BUSY_TIMEOUT_MS
            )
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        if on_disk:  # a second pool whose connections commit without waiting for the disk
            self._relaxed_engine = create_async_engine(url, **options)
            event.listen(self._relaxed_engine.sync_engine, "connect", _sqlite_relaxed_pragmas)
            self._autocommit_engine = create_async_engine(
                url, isolation_level="AUTOCOMMIT", pool_size=1, **options
            )
            event.listen(self._autocommit_engine.sync_engine, "connect", _sqlite_relaxed_pragmas)
        self._sessions = async_sessionmaker(self.engine, class_=AsyncSession, expire_on_commit=False)
        self._relaxed_sessions = (
            self._sessions
            if self._relaxed_engine is None
            else async_sessionmaker(self._relaxed_engine, class_=AsyncSession, expire_on_commit=False)
        )
        # SQLite: this process's transactions queue here rather than on the file's lock (_writer)
        self._write_lock = asyncio.Lock() if self.is_sqlite else None
        self._write_holder: asyncio.Task[Any] | None = None
        # what must stay the same for relaxed commits to be as good as durable ones (see below)
        self.durability_epoch = _boot_id() if self._relaxed_engine is not None else "durable"

    async def preflight(self) -> str | None:
        """Make sure the database can be used before anything relies on it: it opens (within
        :data:`CONNECT_SECONDS`), an SQLite file is writable, and its schema is not newer than this
        code's migrations. Raises :class:`DatabaseUnavailable` with one sentence. Creates nothing:
        a SQLite file that does not exist yet only needs a folder it can be written in. Returns the
        schema's revision (None: no schema yet)."""
        revision = await self._revision()
        if revision is None or revision == head_revision():
            return revision  # empty (migrate creates the schema), or the newest
        self._check_known(revision)
        return revision

    async def _revision(self) -> str | None:
        """:meth:`preflight` without alembic: the database opens, and its schema's revision."""
        if self.path is not None and not self.path.exists():
            if not os.access(self.path.parent, os.W_OK):
                raise DatabaseUnavailable(f"cannot create the database in {self.path.parent} (not writable)")
            return None
        if self.path is not None and not os.access(self.path, os.R_OK | os.W_OK):
            raise DatabaseUnavailable(f"cannot read and write the database file {self.path}")
        try:
            async with asyncio.timeout(CONNECT_SECONDS), self.engine.connect() as connection:
                revision = await connection.run_sync(_schema_revision)
        except TimeoutError:
            raise DatabaseUnavailable(
                f"cannot reach the database at {safe_url(self.url)} (no answer in {CONNECT_SECONDS:.0f} s)"
            ) from None
        except Exception as exc:
            raise DatabaseUnavailable(
                f"cannot open the database at {safe_url(self.url)} ({_reason(exc)})"
            ) from None
        return revision

    def _check_known(self, revision: str) -> None:
        """A schema newer than this code's migrations is refused (alembic reads the revisions)."""
        from alembic.script import ScriptDirectory
        from alembic.util.exc import CommandError as AlembicCommandError

        scripts = ScriptDirectory.from_config(alembic_config(self.url))
        try:
            known = scripts.get_revision(revision) is not None
        except AlembicCommandError:
            known = False
        if not known:
            raise DatabaseUnavailable(
                f"the database at {safe_url(self.url)} has a newer schema (revision {revision}) than "
                "this version of salesbot knows: upgrade salesbot, or use a database made by this version"
            )

    async def migrate(self, *, apart: bool = False) -> None:
        """Check the database (:meth:`preflight`), then bring the schema to the newest revision
        (creates it on an empty database). A schema already the newest needs no alembic at all.
        ``apart``: a schema to create or change is migrated by a child process
        (``storage.upgrade``), so a long-running bot keeps none of alembic in memory (an in-memory
        SQLite database, which no other process can open, is migrated here)."""
        if apart and (self.path is not None or not self.is_sqlite):
            newest = head_revision()
            if newest is not None and await self._revision() == newest:
                return
            await _upgrade_apart(self.url)
            if newest is not None and await self._revision() != newest:
                raise SchemaUpgradeFailed(
                    "the database's schema is still not the newest after the upgrade (another "
                    "salesbot's code may have run it: start salesbot from its own installation)"
                )
            return
        revision = await self.preflight()
        if revision is not None and revision == head_revision():
            return
        from alembic import command

        await asyncio.to_thread(command.upgrade, alembic_config(self.url), "head")

    async def ping(self, within: float = CONNECT_SECONDS) -> str:
        """Whether the database answers now: "" if it does, else why not (one phrase, no URL)."""
        try:
            async with asyncio.timeout(within), self.engine.connect() as connection:
                await connection.execute(sql_text("SELECT 1"))
        except TimeoutError:
            return f"the database does not answer (within {within:.0f} s)"
        except Exception as exc:
            return f"the database cannot be reached ({_reason(exc)})"
        return ""

    @asynccontextmanager
    async def transaction(self, *, inline: bool = False) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on any error.
        Inside a :meth:`unit_of_work` of this database (same task) it joins that unit instead, so
        the unit commits or rolls back as a whole. ``inline``: a hot unit whose every statement
        is small (SQLite on disk: see storage/hot_session.py)."""
        unit = self._unit()
        if unit is not None:
            yield unit.session
            return
        async with self._writer(), self._session(inline=inline, relaxed=False) as session:
            yield session

    @asynccontextmanager
    async def unit_of_work(
        self, *, inline: bool = False, group_commit: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """One transaction that every :meth:`transaction` opened in this task joins until it ends:
        several services' writes (a rep command) commit together or not at all. Other tasks are
        never joined (work they start here is not part of the unit). A unit inside a unit joins it.
        ``inline``: as for :meth:`transaction`; its after-commit effects are not part of it.
        ``group_commit`` (with ``inline``, SQLite on disk): the commit does not wait for the disk,
        whose flush comes within about a second or with the next durable commit that writes
        (storage/group_commit.py): for units none of whose effects outside this process (a send,
        a platform call) happens before a durable commit that follows. A unit that keeps a
        planned message from going out calls ``storage.group_commit.must_reach_disk``. Elsewhere
        (PostgreSQL, SQLite in memory, after a failed flush) the commit is durable."""
        unit = self._unit()
        if unit is not None:
            yield unit.session
            return
        group = group_commit and inline and self._hot is not None and self._hot.flusher.active
        async with self._writer(), self._session(inline=inline, relaxed=False, group=group) as session:
            opened = _Unit(self, asyncio.current_task(), session)
            token = _UNIT.set(opened)
            try:
                yield session
            finally:
                _UNIT.reset(token)
        for effect in opened.after_commit:  # committed: what waited for it may happen now
            await effect()

    @asynccontextmanager
    async def _session(
        self, *, inline: bool, relaxed: bool, group: bool = False
    ) -> AsyncIterator[AsyncSession]:
        """A session in a transaction, committed when the block ends (rolled back on an error):
        a hot one (see storage/hot_session.py) for ``inline`` work on SQLite on disk, committed
        relaxed, durably, or as a group commit (``group``; durable where there is no hot one)."""
        hot = self._hot if inline else None
        if hot is None:
            # the asyncio session; opened inside a hot unit of this task (a composer's report) it
            # reads, and its writes would wait for the outer's lock (an inline one is refused)
            sessions = self._relaxed_sessions if relaxed else self._sessions
            async with sessions() as session, session.begin():
                yield session
            return
        durable = not (relaxed or group)
        session = hot.session(durable=durable)
        sync = session.sync_session
        try:
            await hot.begin(session)
            yield session
            await hot.commit(session, durable=durable, group=group)
        except BaseException:
            with contextlib.suppress(Exception):  # bookkeeping: release() ends SQLite's transaction
                sync.rollback()
            raise
        finally:
            hot.release(session)

    def sync_engines(self, *, relaxed: bool = True) -> list[Engine]:
        """Every engine this database runs statements on (the asyncio ones' synchronous cores and
        the hot units' engines), or only those that commit durably: for event listeners that
        count or watch statements and commits."""
        engines = [self.engine] + ([self._relaxed_engine, self._autocommit_engine] if relaxed else [])
        hot = [] if self._hot is None else [self._hot.durable] + ([self._hot.relaxed] if relaxed else [])
        return [e.sync_engine for e in engines if e is not None] + hot

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
    async def relaxed_transaction(self, *, inline: bool = False) -> AsyncIterator[AsyncSession]:
        """Like :meth:`transaction`, but on SQLite the commit does not wait for the disk: it
        survives this process being killed, not an operating-system crash or a power loss. While
        :attr:`durability_epoch` (the machine's boot) is unchanged, such commits are as good as
        durable ones. For cheap, frequent writes whose loss after a machine crash is handled
        (the dispatcher's send outcomes). PostgreSQL commits are always durable. Never inside a
        unit of work: its own connection would wait on the unit's write lock. ``inline``: as for
        :meth:`transaction`."""
        if self.in_unit():
            raise RuntimeError("a relaxed transaction cannot run inside a unit of work")
        async with self._writer(), self._session(inline=inline, relaxed=True) as session:
            yield session

    @asynccontextmanager
    async def relaxed_writes(self) -> AsyncIterator[RelaxedWriter]:
        """A writer for a run of one-statement relaxed commits (the dispatcher writes each send's
        outcome before the next send): each :meth:`RelaxedWriter.execute` commits as a
        :meth:`relaxed_transaction` would, but on SQLite with no session, on connections in
        autocommit mode (a single statement is its own transaction), and mostly with no hop to
        aiosqlite's thread at all (see :class:`_SQLiteWriter`). Holds no lock between statements."""
        if self.in_unit():
            raise RuntimeError("relaxed writes cannot run inside a unit of work")
        engine = self._autocommit_engine
        if engine is None:  # PostgreSQL (always durable), SQLite in memory: a transaction each
            yield _TransactionWriter(self)
            return
        if self._inline is None and self._hot is not None:
            # one-row relaxed writes on the loop's thread: tens of microseconds, less than a hop
            # to another thread and back; a lock held elsewhere sends the write to aiosqlite's
            self._inline = loop_connection(self._hot.connect_args, synchronous="NORMAL")
        async with contextlib.AsyncExitStack() as stack:

            async def fallback() -> Any:
                """The autocommit pool's connection, taken only when a statement must wait for
                another process's lock: the pool holds one, and a writer that held it while
                writing inline made a second writer (an echo during a batch) open a connection
                of its own, a thread and all, for one statement."""
                connection = await stack.enter_async_context(engine.connect())
                return (await connection.get_raw_connection()).driver_connection

            yield _SQLiteWriter(self, fallback, engine.dialect, self._inline)

    async def relaxed_returning(self, statement: Executable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """One write with ``RETURNING``, committed relaxed on its own (see :meth:`relaxed_writes`),
        run again when the database refused it for now (busy, a conflict): its rows."""

        async def attempt() -> list[tuple[Any, ...]]:
            async with self.relaxed_writes() as writer:
                return await writer.returning(statement, params)

        return await retrying(attempt)

    @asynccontextmanager
    async def _writer(self) -> AsyncIterator[None]:
        """On SQLite, one transaction of this process at a time, first come first served.

        SQLite has one writer: transactions that met on its file lock used to wait in its busy
        handler (sleep and poll, no queue), and under a burst one waited past ``busy_timeout`` and
        failed with "database is locked". Queueing here is fair and costs no polling; SQLite's own
        lock is then only ever contended by another process (or a backup). A task already holding
        it passes (a transaction opened inside another one, as before). PostgreSQL locks rows: no
        queue."""
        task = asyncio.current_task()
        if self._write_lock is None or (task is not None and self._write_holder is task):
            yield
            return
        async with self._write_lock:
            self._write_holder = task
            try:
                yield
            finally:
                self._write_holder = None

    async def retrying_unit(
        self, work: Callable[[AsyncSession], Awaitable[T]], *, group_commit: bool = False
    ) -> T:
        """``work`` in one :meth:`unit_of_work`, run again from the start when the database refused
        it for now (:func:`storage.retry.transient`: busy, a serialization conflict). Each attempt
        gets a new session; nothing of a failed one is kept, its after-commit effects never run.
        ``work`` must do nothing outside the database (that belongs in :meth:`after_commit`), and
        only small statements: they may run on the loop's thread (``unit_of_work(inline=True)``).
        ``group_commit``: see :meth:`unit_of_work`.
        Inside a unit already it joins that unit and is not retried alone: the outer one is."""
        unit = self._unit()
        if unit is not None:  # part of the outer unit: that one is retried (or not) as a whole
            return await work(unit.session)

        async def attempt() -> T:
            async with self.unit_of_work(inline=True, group_commit=group_commit) as session:
                return await work(session)

        return await retrying(attempt)

    def owes_flush(self) -> bool:
        """Whether group commits of this process wait for their flush (none after a failed one:
        there is nothing left to promise then, and the failure was logged)."""
        hot = self._hot
        return hot is not None and hot.flusher.active and hot.flusher.owed > 0

    async def flush_group_commits(self) -> None:
        """Every group commit of this process so far is on the disk when this returns (see
        :meth:`unit_of_work`); nothing to do where commits are always durable."""
        if self._hot is not None:
            await self._hot.flusher.flush()

    async def close(self) -> None:
        try:
            await self.engine.dispose()
            if self._relaxed_engine is not None:
                await self._relaxed_engine.dispose()
            if self._autocommit_engine is not None:
                await self._autocommit_engine.dispose()
            if self._inline is not None:
                self._inline.close()
                self._inline = None
        finally:  # what group commits owe is flushed, whatever failed before
            if self._hot is not None:
                await self._hot.close()


class RelaxedWriter:
    """Runs single Core statements, each committed relaxed (see :meth:`Database.relaxed_writes`)."""

    async def execute(self, statement: Executable, params: dict[str, Any]) -> None:
        raise NotImplementedError

    async def returning(self, statement: Executable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """A write with ``RETURNING``: the rows it returns (plain values, no result processing:
        for ids, text and numbers)."""
        raise NotImplementedError


class _TransactionWriter(RelaxedWriter):
    def __init__(self, db: Database) -> None:
        self.db = db

    async def execute(self, statement: Executable, params: dict[str, Any]) -> None:
        async with self.db.relaxed_transaction() as session:
            await session.exec(statement, params=params)

    async def returning(self, statement: Executable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        async with self.db.relaxed_transaction() as session:
            return [tuple(row) for row in (await session.exec(statement, params=params)).all()]


@dataclass(frozen=True)
class _Prepared:
    """A statement compiled for SQLite once: its SQL, and how to turn a run's parameters into the
    driver's positional arguments (values the statement holds itself, each type's conversion)."""

    statement: Executable
    sql: str
    names: tuple[str, ...]
    constants: dict[str, Any]
    processors: dict[str, Callable[[Any], Any]]

    @classmethod
    def compile(cls, statement: Executable, dialect: Dialect) -> _Prepared:
        compiled = statement.compile(dialect=dialect)
        if "POSTCOMPILE" in compiled.string:  # an IN list expanded per run: not for this path
            raise ValueError("a relaxed write cannot take an expanding IN parameter")
        processors: dict[str, Callable[[Any], Any]] = {}
        for name, bind in compiled.binds.items():
            # the dialect's own conversion (SQLite's text form of a datetime, as a session writes it)
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[name] = processor
        constants = {name: bind.effective_value for name, bind in compiled.binds.items() if not bind.required}
        names = tuple(compiled.positiontup or ())
        return cls(statement, compiled.string, names, constants, processors)

    def arguments(self, params: dict[str, Any]) -> list[Any]:
        args = []
        for name in self.names:
            value = params[name] if name in params else self.constants[name]
            processor = self.processors.get(name)
            args.append(value if processor is None else processor(value))
        return args


class _SQLiteWriter(RelaxedWriter):
    """A statement compiled once, then run on ``inline`` in the event loop's thread (no hop) when
    the file's write lock is free, else on aiosqlite's connection (one hop; SQLite's busy handler
    waits there, not in the loop). Parameters go through their column types' conversions
    (dates); an expanding ``IN`` parameter is refused."""

    _compiled: ClassVar[dict[int, _Prepared]] = {}

    def __init__(
        self,
        db: Database,
        connect: Callable[[], Awaitable[Any]],
        dialect: Dialect,
        inline: sqlite3.Connection | None = None,
    ) -> None:
        self.db = db
        self.connect = connect  # aiosqlite's connection, taken the first time one is needed
        self.connection: Any = None
        self.dialect = dialect
        self.inline = inline

    def _prepared(self, statement: Executable) -> _Prepared:
        prepared = self._compiled.get(id(statement))
        if prepared is None or prepared.statement is not statement:
            prepared = self._compiled[id(statement)] = _Prepared.compile(statement, self.dialect)
        return prepared

    async def execute(self, statement: Executable, params: dict[str, Any]) -> None:
        await self._run(statement, params, fetch=False)

    async def returning(self, statement: Executable, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        return await self._run(statement, params, fetch=True)

    async def _run(
        self, statement: Executable, params: dict[str, Any], *, fetch: bool
    ) -> list[tuple[Any, ...]]:
        prepared = self._prepared(statement)
        args = prepared.arguments(params)
        async with self.db._writer():  # no transaction of this process is open meanwhile
            if self.inline is not None:
                try:
                    cursor = self.inline.execute(prepared.sql, args)
                    # an UPDATE ... RETURNING is done (and committed) once its rows are read
                    return [tuple(row) for row in cursor.fetchall()] if fetch else []
                except sqlite3.Error as exc:  # busy: another process (a backup) writes now
                    if exc.sqlite_errorcode & 0xFF not in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                        raise DBAPIError.instance(prepared.sql, args, exc, sqlite3.Error) from None
            if self.connection is None:
                self.connection = await self.connect()
            try:
                rows = await self.connection.execute_fetchall(prepared.sql, args)
            except sqlite3.Error as exc:  # as SQLAlchemy raises it: storage.retry reads it so
                raise DBAPIError.instance(prepared.sql, args, exc, sqlite3.Error) from None
            return [tuple(row) for row in rows] if fetch else []
