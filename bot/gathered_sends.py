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
        self._now = asyncio.Event()  # set: no window, send at once (a flush, a stop)
        self._closed = False

    def add(self, row_ids: Collection[int]) -> None:
        """Send these rows with the others of this window. After :meth:`close` they stay planned
        for the next start."""
        if self._closed:
            return
        self._pending.update(row_ids)
        if self.task is None:
            self.task = asyncio.create_task(self._rounds())
            self.task.add_done_callback(self._ended)

    async def flush(self) -> None:
        """Send what waits now, and what is added meanwhile, and return once it is sent (or its
        round failed): what a caller waiting for the handlers' work needs (``SalesBot.settle``)."""
        if self.task is None:
            return
        self._now.set()
        try:
            while self.task is not None:
                await asyncio.wait({self.task})
        finally:
            if not self._closed:
                self._now.clear()

    def close(self) -> asyncio.Task[None] | None:
        """A stop: what waits is sent at once, later rows stay planned for the next start. Returns
        the round under way, for the stop to wait for (and cut short once its grace is over)."""
        self._closed = True
        self._now.set()
        return self.task

    def _ended(self, task: asyncio.Task[None]) -> None:
        if self.task is task:
            self.task = None

    async def _rounds(self) -> None:
        try:
            while self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.window_seconds)
                rows, self._pending = frozenset(self._pending), set()
                try:
                    await self.send(rows)
                except Exception:  # the rows are the dispatcher's, as after any failed dispatch
                    log.exception("sending %d message(s) due at once failed", len(rows))
        except asyncio.CancelledError:  # a stop cut the round short after its grace
            log.info("the gathered messages' round was stopped with the process; unsent ones stay planned")
            raise
