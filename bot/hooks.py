"""The one hook mechanism: services announce what happened as small event objects; the app decides
who listens. No service holds a callback into another, so construction has no cycles and a new
listener is one ``hooks.on(...)`` line in the wiring.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from bot.transport.base import FriendRequest
from storage.models import ScheduledMessage

E = TypeVar("E")
Listener = Callable[[E], Awaitable[None] | None]


@dataclass(frozen=True)
class Planned:
    """An outbox row was planned, due at ``due``: the dispatcher may need to wake earlier."""

    due: datetime


@dataclass(frozen=True)
class AcceptInterrupted:
    """The connection dropped while accepting a friend request: handle it again after reconnecting."""

    account_id: str
    request: FriendRequest


@dataclass(frozen=True)
class MessageSent:
    """A planned message went out in full (committed)."""

    row: ScheduledMessage


@dataclass(frozen=True)
class CustomerUnreachable:
    """A send proved the customer is no longer a friend (they deleted the rep)."""

    customer_id: int
    reason: str


@dataclass(frozen=True)
class Undeliverable:
    """A planned message did not, or may not have, gone out: the rep should know."""

    row: ScheduledMessage
    reason: str
    # a message sent in parts whose earlier parts went out: what did not (图片「x.png」, 第2段起的文字)
    unsent: str = ""


class Hooks:
    def __init__(self) -> None:
        self._listeners: defaultdict[type[Any], list[Listener[Any]]] = defaultdict(list)

    def on(self, event_type: type[E], listener: Listener[E]) -> None:
        self._listeners[event_type].append(listener)

    async def emit(self, event: object) -> None:
        """Call every listener of ``type(event)`` in the order they were added."""
        for listener in self._listeners[type(event)]:
            result = listener(event)
            if inspect.isawaitable(result):
                await result
