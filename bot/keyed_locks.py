"""One asyncio lock per key, kept only while someone holds it or waits for it.

The bot serialises each contact's events (pyee delivers them concurrently). A lock per contact in a
``defaultdict`` stayed for good: a lock, its key and a slot for every contact that ever wrote,
growing with the account's whole history. Here a key's lock goes when its last user leaves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Hashable
from types import TracebackType


class KeyedLocks:
    def __init__(self) -> None:
        self._locks: dict[Hashable, tuple[asyncio.Lock, int]] = {}  # the lock, and its users

    def __len__(self) -> int:
        """Keys held or waited for now."""
        return len(self._locks)

    def hold(self, key: Hashable) -> _Hold:
        """``async with locks.hold(key)``: users of one key go one at a time, in the order they
        came (a class, not a generator: this runs for every inbound event)."""
        return _Hold(self._locks, key)


class _Hold:
    __slots__ = ("_key", "_lock", "_locks")

    def __init__(self, locks: dict[Hashable, tuple[asyncio.Lock, int]], key: Hashable) -> None:
        self._locks, self._key = locks, key
        self._lock: asyncio.Lock | None = None

    async def __aenter__(self) -> None:
        lock, users = self._locks.get(self._key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[self._key] = (lock, users + 1)  # counted before waiting: a waiter keeps the key
        self._lock = lock
        try:
            await lock.acquire()
        except BaseException:  # cancelled while waiting
            self._leave()
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._lock is not None
        self._lock.release()
        self._leave()

    def _leave(self) -> None:
        lock, users = self._locks[self._key]
        if users == 1:
            del self._locks[self._key]
        else:
            self._locks[self._key] = (lock, users - 1)
