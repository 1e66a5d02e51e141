"""The boundary between salesbot and a chat platform.

Business logic sees only these dataclasses and the :class:`Transport` protocol; the Wechaty SDK stays
inside :mod:`bot.transport.wechaty_adapter`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields, is_dataclass, replace
from enum import StrEnum
from typing import Protocol, TypeVar

from bot.media import Attachment


@dataclass(frozen=True)
class Contact:
    contact_id: str
    name: str
    alias: str = ""


@dataclass(frozen=True)
class FriendRequest:
    """Someone asked to become the rep's friend (``confirmed`` is False) or the platform reports a
    friendship that is now established (``confirmed`` is True, e.g. accepted on the phone)."""

    friendship_id: str
    contact: Contact
    hello: str
    confirmed: bool = False


@dataclass(frozen=True)
class TextMessage:
    """A text in a one-to-one chat. ``from_self`` means the account itself sent it: the rep typing on
    their phone, or an echo of the bot's own send."""

    message_id: str
    conversation_id: str
    talker: Contact
    text: str
    from_self: bool
    in_room: bool = False
    # the transport recognised the bot's own send coming back (a hint; the outgoing log decides)
    echo: bool = False


class LoginStatus(StrEnum):
    """Where an account's login stands (a puppet that logs in by QR code goes through all five)."""

    WAITING = "waiting"  # a QR code is shown: scan it with the account's phone
    SCANNED = "scanned"  # scanned; confirm on the phone
    LOGGED_IN = "logged_in"
    LOGGED_OUT = "logged_out"
    EXPIRED = "expired"  # the code timed out or was cancelled before a login


@dataclass(frozen=True)
class LoginEvent:
    status: LoginStatus
    qr: str = ""  # the code's content (a login URL) while WAITING


InboundEvent = FriendRequest | TextMessage
T = TypeVar("T")


def without_nul(value: T) -> T:
    """``value`` (an event, a contact, a string) with every NUL character removed. Nobody types
    one, but a platform or a client may send one, and PostgreSQL refuses it in any text column:
    the whole event would be lost."""
    if isinstance(value, str):
        return value.replace("\x00", "")  # type: ignore[return-value]
    if is_dataclass(value) and not isinstance(value, type):
        changes = {f.name: without_nul(getattr(value, f.name)) for f in fields(value)}
        return replace(value, **changes)
    return value


EventSink = Callable[[InboundEvent], Awaitable[None]]
# (account id, connected now, why): told when an account loses or regains its connection
ConnectionListener = Callable[[str, bool, str], None]
# (account id, what happened): a QR code to scan, scanned, logged in or out, a code expired
LoginListener = Callable[[str, LoginEvent], None]


class Transport(Protocol):
    """One logged-in account on one chat platform."""

    account_id: str
    on_connection: ConnectionListener | None
    on_login: LoginListener | None

    @property
    def self_id(self) -> str: ...

    @property
    def connected(self) -> bool:
        """Logged in with a live connection; while False, sends raise NotConnected."""
        ...

    async def start(self, sink: EventSink) -> None:
        """Connect and log in; deliver every inbound event to ``sink``. Raises TransportError."""
        ...

    async def stop(self) -> None: ...

    async def accept(self, request: FriendRequest) -> None: ...

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        """Send a text; return the platform's message id when it gives one.
        Raises RecipientUnavailable when the customer can no longer be reached."""
        ...

    async def send_attachment(self, conversation_id: str, attachment: Attachment) -> str | None:
        """Send an image, a file, a link card or a mini-program card; like :meth:`send_text`.
        Raises TransportError when the platform cannot send that kind."""
        ...

    async def recall(self, message_id: str) -> bool: ...

    async def find_room(self, topic: str) -> str | None:
        """The id of the group chat with exactly this topic, or None."""
        ...

    async def tag_contact(self, contact_id: str, tag: str, *, remove: bool = False) -> None:
        """Add (or remove) a contact tag on the platform. Raises TransportError when unsupported."""
        ...

    async def settle(self) -> None:
        """Wait until every inbound event received so far has been handled (in-process transports)."""
        ...
