"""Who is speaking: decided once per inbound event, then one handler per speaker.

The order matters and lives only here: our own send coming back (an echo) is never handled again;
a supervisor's text is theirs even in a group; the rep (the account itself or an admin) may type
commands anywhere; a group chat is nobody's customer conversation; everyone else is a customer.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum

from bot.transport.base import FriendRequest, InboundEvent, TextMessage

log = logging.getLogger("salesbot")


class Speaker(Enum):
    ECHO = "echo"  # the bot's own send, reported back by the platform
    SUPERVISOR = "supervisor"
    REP = "rep"  # the account itself or one of its admins
    GROUP = "group"  # someone in a group chat who is none of the above
    CUSTOMER = "customer"


@dataclass(frozen=True)
class Said:
    """A text message and who said it."""

    account_id: str
    message: TextMessage
    speaker: Speaker
    supervisor: str | None = None  # the supervisor's name, for Speaker.SUPERVISOR


TextHandler = Callable[[Said], Awaitable[None]]
FriendRequestHandler = Callable[[str, FriendRequest], Awaitable[None]]


class Router:
    def __init__(
        self,
        *,
        is_echo: Callable[[str, TextMessage], Awaitable[bool]],
        supervisor_of: Callable[[str, TextMessage], str | None],
        is_rep: Callable[[str, TextMessage], bool],
        on_friend_request: FriendRequestHandler,
        handlers: Mapping[Speaker, TextHandler],
    ) -> None:
        self.is_echo = is_echo
        self.supervisor_of = supervisor_of
        self.is_rep = is_rep
        self.on_friend_request = on_friend_request
        self.handlers = handlers

    async def route(self, account_id: str, event: InboundEvent) -> None:
        if isinstance(event, FriendRequest):
            await self.on_friend_request(account_id, event)
        elif isinstance(event, TextMessage):
            said = await self.said(account_id, event)
            handler = self.handlers.get(said.speaker)
            if handler is not None:
                await handler(said)

    async def said(self, account_id: str, message: TextMessage) -> Said:
        # an own message is checked against the outgoing log first: that also confirms delivery
        if message.from_self and (await self.is_echo(account_id, message) or message.echo):
            return Said(account_id, message, Speaker.ECHO)
        supervisor = self.supervisor_of(account_id, message)
        if supervisor is not None:
            return Said(account_id, message, Speaker.SUPERVISOR, supervisor)
        if self.is_rep(account_id, message):
            return Said(account_id, message, Speaker.REP)
        if message.in_room:
            return Said(account_id, message, Speaker.GROUP)
        return Said(account_id, message, Speaker.CUSTOMER)
