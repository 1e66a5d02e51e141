"""What customers' messages plan to send at once, sent together (issue 20).

A customer's message commits the rows it wants sent at once (the console card for an objection,
an auto reply). Sent by its handler, each message cost a dispatch round of its own: a disk-flushed
reservation, a claim and a settle. A running process gathers them instead: the first row starts a
short window, and one round (``send``, the dispatcher's ``run_due(only=...)``) sends every row
planned meanwhile. Nothing waits in memory alone: the rows are committed as planned before they
are added, so a crash leaves them to the next start, and a round that fails leaves them to the
dispatcher's poll. A stop sends what waits (:meth:`close`), as the handlers did before it began.
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
        self._now = asyncio.Event()  # ends the window early (a stop)
        self._closed = False

    def add(self, row_ids: Collection[int]) -> None:
        """Send these rows with the others of this window. After :meth:`close` they stay planned
        for the next start (a stopping dispatcher claims nothing)."""
        if self._closed:
            return
        self._pending.update(row_ids)
        if self.task is None:
            self.task = asyncio.create_task(self._rounds())

    async def close(self, wait_seconds: float) -> None:
        """Send what waits now, waiting up to ``wait_seconds`` for that round; a round still
        sending then is the caller's to cut short (:attr:`task`)."""
        self._closed = True
        self._now.set()
        if self.task is not None:
            await asyncio.wait({self.task}, timeout=wait_seconds)

    async def _rounds(self) -> None:
        try:
            while self._pending:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._now.wait(), self.window_seconds)
                rows, self._pending = frozenset(self._pending), set()
                try:
                    await self.send(rows)
                except Exception as exc:  # the rows stay planned: the dispatcher's poll sends them
                    log.error(
                        "sending %d message(s) due at once failed (%s); the next poll sends them",
                        len(rows),
                        exc,
                    )
        except asyncio.CancelledError:  # a stop cut the round short after its grace
            log.info("the gathered messages' round was stopped with the process; unsent ones stay planned")
            raise
        finally:
            self.task = None
