"""What customers' messages plan to send at once, sent together (issue 20).

A customer's message commits the rows it wants sent at once (the console card for an objection,
an auto reply). Sent by its handler, each message cost a dispatch round of its own: a disk-flushed
reservation, a claim and a settle. A running process gathers them instead: the first row starts a
short window, and one round (``send``, the dispatcher's ``run_due(only=...)``) sends every row
planned meanwhile. Nothing waits in memory alone: the rows are committed as planned before they
are added, so a crash leaves them to the next start, and a round that fails leaves them as any
failed dispatch does (pending for the poll; claimed, for the next start's recovery). A stop sends
what waits (:meth:`close`), as the handlers did before it began; ``SalesBot.settle`` waits for it
(:meth:`flush`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Collection

log = logging.getLogger("salesbot")

Send = Callable[[frozenset[int]], Awaitable[object]]


class GatheredSends:
    """Rows to send at once, sent in one round per ``window_seconds`` (see the module)."""

    def __init__(self, send: Send, window_seconds: float) -> None:
        self.send = send
        self.window_seconds = window_seconds
        self.task: asyncio.Task[None] | None = None  # waits out the window, then sends
        self._pending: set[int] = set()
        self._now = asyncio.Event()  # set: the waiting rows go at once (a flush, a stop)
        self._next: asyncio.Future[None] | None = None  # done once the waiting rows' round ends
        self._sending: asyncio.Future[None] | None = None  # the round under way: done when it ends
        self._closed = False

    def add(self, row_ids: Collection[int]) -> None:
        """Send these rows with the others of this window. After :meth:`close` they stay planned
        for the next start."""
        if self._closed:
            return
        self._pending.update(row_ids)
        # cleared by the task itself, in the step its last check ran (done: cancelled unstarted)
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._rounds())

    async def flush(self) -> bool:
        """Send the rows waiting now, and return once their round (and one under way) has ended,
        sent or failed: what a caller waiting for the handlers' work needs (``SalesBot.settle``).
        Rows added meanwhile wait their own window. Returns whether a round was waited for."""
        if self.task is None or self.task.done() or self.task is asyncio.current_task():
            return False  # nothing waits; or called from a round itself, which cannot wait for itself
        rounds = [self._sending] if self._sending is not None else []
        if self._pending:
            if self._next is None:
                self._next = asyncio.get_running_loop().create_future()
            rounds.append(self._next)
            self._now.set()
        if rounds:
            await asyncio.wait(rounds)
        return bool(rounds)

    def close(self) -> asyncio.Task[None] | None:
        """A stop: what waits is sent at once, later rows stay planned for the next start. Returns
        the task sending it, for the stop to wait for (and cut short once its grace is over)."""
        self._closed = True
        self._now.set()
        return self.task

    async def _rounds(self) -> None:
        try:
            while self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.window_seconds)
                if not self._closed:
                    self._now.clear()  # a flush hurries the rows waiting then, not later ones
                rows, self._pending = frozenset(self._pending), set()
                sending = self._next or asyncio.get_running_loop().create_future()
                self._sending, self._next = sending, None
                try:
                    await self.send(rows)
                except asyncio.CancelledError:
                    if _cancelled():
                        raise
                    log.exception("sending %d message(s) due at once failed", len(rows))
                except Exception:  # the rows are the dispatcher's, as after any failed dispatch
                    log.exception("sending %d message(s) due at once failed", len(rows))
                finally:
                    self._sending = None
                    sending.set_result(None)
        except asyncio.CancelledError:  # a stop cut the round short after its grace
            log.info("the gathered messages' round was stopped with the process; unsent ones stay planned")
            self._pending.clear()  # they stay planned in the database, for the next start
            if self._next is not None:
                self._next.set_result(None)
                self._next = None
            raise
        finally:  # in the step of the loop's last check: an add() after it starts a new task
            if self.task is asyncio.current_task():
                self.task = None


def _cancelled() -> bool:
    """Whether this task was cancelled (a stop), not merely handed a CancelledError by what it
    awaited (a transport's cancelled future): only the former ends the rounds."""
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
