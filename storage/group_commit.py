"""Group commits on SQLite: commits that skip the disk's flush, flushed together a moment later.

A customer's message costs the bot one commit; with ``synchronous=FULL`` each waits for the disk
(8% of the bot's CPU per event on a virtual disk, bench/hot_path.py). A group commit is made with
``synchronous=NORMAL`` instead: it survives the process being killed at once, and a machine's
crash only once the write-ahead log is flushed. :class:`WalFlusher` flushes the WAL on a thread of
its own about :data:`GROUP_COMMIT_SECONDS` after the oldest group commit not yet flushed, one
flush for all of them, and closing flushes what is owed. A durable commit that writes flushes them
too (one WAL, appended in commit order): that is what makes a send safe, since the dispatcher's
reservation before every send is such a commit. The flusher does not count on it, since SQLite
writes nothing for an update that changes no byte.

What may be a group commit is the caller's promise (storage/db.py, ``group_commit``): a unit none
of whose effects outside the process happens before a durable commit that follows it. A unit that
keeps a planned message from going out (a cancelled follow-up, a held countdown) calls
:func:`must_reach_disk`: it is flushed before its commit returns, since a machine's crash that
forgot the cancellation would send the message after all.

A flush that fails (the disk reports an error) is not tried again: after a failed ``fsync`` the
kernel may have dropped the pages it could not write, so a second one that succeeds proves
nothing. The failure is logged as an error and from then on no unit is a group commit. The WAL
stays open on one descriptor from the first flush to the last, so an error the kernel met while
writing it back in between is reported to that descriptor's next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

log = logging.getLogger(__name__)

# a group commit's flush starts this long after it was made (sooner when a unit must reach the disk)
GROUP_COMMIT_SECONDS = 1.0
_MUST_REACH_DISK = "salesbot.must_reach_disk"


def must_reach_disk(session: Any) -> None:
    """The unit of work ``session`` belongs to must be on the disk when its commit returns, even if
    it began as a group commit: it keeps a planned message from being sent."""
    session.info[_MUST_REACH_DISK] = True


def reaches_disk(session: Any) -> bool:
    """Whether :func:`must_reach_disk` was called for this session's unit."""
    return bool(session.info.get(_MUST_REACH_DISK))


def wal_path(connection: sqlite3.Connection) -> str:
    """The WAL file of the database ``connection`` opened: SQLite names it after the main file,
    which it reports with its path resolved."""
    rows = connection.execute("PRAGMA database_list").fetchall()
    return next(str(row[2]) for row in rows if row[1] == "main") + "-wal"


class FlushFailed(OSError):
    """A flush of the WAL failed once: what group commits wrote may not be on the disk."""


class WalFlusher:
    """Counts group commits and flushes the WAL for them (see the module's docstring). Used on the
    event loop's thread; the flushes run on a thread of their own, never behind a commit waiting
    for another process's lock."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = GROUP_COMMIT_SECONDS
        self.path: str | None = None  # the WAL file: set before the first group commit
        self.clock = clock
        self.failed: str | None = None  # why a flush failed; group commits end then
        self._made = 0  # group commits so far
        self._flushed = 0  # how many of them are known to be on the disk
        self._oldest: float | None = None  # when the oldest one no flush has started for was made
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._descriptor: int | None = None  # the WAL, open from the first flush to close()
        self._opening = threading.Lock()
        self._closer: weakref.finalize[[int], WalFlusher] | None = None  # closes _descriptor, once
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="salesbot-wal-flush")

    @property
    def active(self) -> bool:
        """Whether units may be group commits now (no flush has failed, not closed)."""
        return self.failed is None and not self._closed

    @property
    def owed(self) -> int:
        """Group commits not known to be on the disk."""
        return self._made - self._flushed

    def committed(self) -> None:
        """A group commit that wrote was just made: flush it within :attr:`seconds` (at once once
        closed: no timer runs then)."""
        self._made += 1
        if self._closed:  # a unit that began before close(): flushed now, a failure logged
            with contextlib.suppress(FlushFailed):
                self.flush_here()
            return
        if self._oldest is None:
            self._oldest = self.clock()
        self._plan()

    def flush_here(self) -> None:
        """Flush now, on this thread (a unit that must reach the disk, while flushes are fast)."""
        self._check()
        made = self._made
        try:
            self._sync()
        except OSError as exc:
            self._fail(exc)
            raise FlushFailed(str(exc)) from exc
        self._done_up_to(made)

    async def flush(self) -> None:
        """Every group commit made before this call is on the disk when it returns; raises
        :class:`FlushFailed` when that cannot be promised."""
        made = self._made
        while self._flushed < made:
            self._check()
            self._cancel_timer()
            if self._task is None and self._closed:
                self.flush_here()
                continue
            if self._task is None:
                self._start()
            assert self._task is not None
            await asyncio.shield(self._task)
        self._check()

    def fail(self, exc: BaseException) -> None:
        """The disk reported an error writing the database (a checkpoint, a durable commit): what
        group commits wrote may be lost, so they end here as after a failed flush."""
        self._fail(exc)

    async def close(self) -> None:
        """Flush what is owed (a failure is logged), then end the thread."""
        try:
            await self.flush()
        except FlushFailed as exc:
            log.error("the last commits may not be on the disk: %s", exc)
        finally:
            self._closed = True
            self._cancel_timer()
            try:
                await asyncio.to_thread(self._thread.shutdown)
            finally:
                self._close_descriptor()

    def _close_descriptor(self) -> None:
        with self._opening:
            if self._closer is not None:
                self._closer()  # closes it once: a finalizer never runs twice
            self._closer, self._descriptor = None, None

    # -- inside ------------------------------------------------------------------------------------

    def _plan(self) -> None:
        """A timer for the oldest owed commit, unless one is set or a flush runs (which plans the
        next when it ends)."""
        if self._timer is not None or self._task is not None or not self.owed or not self.active:
            return
        oldest = self._oldest if self._oldest is not None else self.clock()
        delay = max(0.0, oldest + self.seconds - self.clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._start)

    def _start(self) -> None:
        self._timer = None
        if self._task is not None or not self.owed or not self.active:
            return
        self._task = asyncio.get_running_loop().create_task(self._run(self._made))
        self._task.add_done_callback(self._ended)
        self._oldest = None

    async def _run(self, made: int) -> None:
        try:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._sync)
        except Exception as exc:
            self._fail(exc)
        else:
            if self.failed is None:  # a failure meanwhile (a checkpoint's) proves this one nothing
                self._done_up_to(made)

    def _ended(self, task: asyncio.Task[None]) -> None:
        self._task = None  # also when it was cancelled before it ran (the loop closing)
        if not task.cancelled():
            self._plan()

    def _done_up_to(self, made: int) -> None:
        self._flushed = max(self._flushed, made)
        if not self.owed:  # nothing left for a timer: the next group commit starts a new moment
            self._oldest = None
            self._cancel_timer()

    def _sync(self) -> None:
        """What ``synchronous=FULL`` does after each commit: the WAL file's data flushed to the
        disk (``fdatasync`` where there is one, as SQLite does), every frame written before it.
        The file is opened once (SQLite keeps it while any connection is open, and its locks are
        on other files) and read-write: Windows flushes only what it may write."""
        if self.path is None:
            return  # no group commit has been made
        flush = getattr(os, "fdatasync", os.fsync)
        if self._closed:  # late: a descriptor of its own, not kept
            descriptor = os.open(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
            try:
                flush(descriptor)
            finally:
                os.close(descriptor)
            return
        with self._opening:  # the loop and the thread may both flush: one descriptor
            if self._descriptor is None:
                self._descriptor = self._open()
            descriptor = self._descriptor
        flush(descriptor)

    def _open(self) -> int:
        """The WAL, opened to be kept; its folder is flushed once, as SQLite does on a new WAL's
        first flush, so the file's name is on the disk too (POSIX; Windows has no such flush)."""
        assert self.path is not None
        descriptor = os.open(self.path, os.O_RDWR | getattr(os, "O_BINARY", 0))
        self._closer = weakref.finalize(self, _close_quietly, descriptor)
        if os.name == "posix":
            folder = os.open(os.path.dirname(self.path) or ".", os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        return descriptor

    def _fail(self, exc: BaseException) -> None:
        if self.failed is None:
            log.error(
                "writing the database's log to disk failed (%s): the last messages may be lost if "
                "the machine crashes; from now on no unit skips the wait for the disk",
                exc,
            )
        self.failed = str(exc) or type(exc).__name__

    def _check(self) -> None:
        if self.failed is not None:
            raise FlushFailed(f"flushing the write-ahead log to disk failed: {self.failed}")

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None


def _close_quietly(descriptor: int) -> None:
    """A flusher never closed (no ``close()``): its WAL descriptor goes with it."""
    with contextlib.suppress(OSError):
        os.close(descriptor)
