"""The only module that talks to the Wechaty SDK: maps Wechaty objects to our transport events.

The real ``wechaty.Wechaty`` class drives both puppets: our in-process :class:`LocalPuppet` and the
gRPC ``wechaty-puppet-service``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter, deque
from typing import Any

from wechaty_puppet import FriendshipType

from bot.errors import RecipientUnavailable, TransportError
from bot.transport.base import Contact, EventSink, FriendRequest, InboundEvent, TextMessage
from bot.transport.local_puppet import LocalPuppet, NotFriendError
from bot.transport.wechaty_compat import IsolatedWechaty, Puppet, new_wechaty_options

log = logging.getLogger(__name__)

_ECHO_MEMORY = 2000


def is_room_id(conversation_id: str) -> bool:
    return conversation_id.endswith("@chatroom")


def explain_start_failure(error: BaseException | None) -> str:
    """Turn what the Wechaty stack raises at startup into an actionable sentence."""
    text = str(error)
    if "ping endpoint" in text or isinstance(error, (ConnectionError, OSError)):
        return (
            f"cannot reach the puppet service ({text}); check the endpoint host:port and that it is running"
        )
    if "token" in text.lower():
        return f"the puppet service rejected the token ({text})"
    return f"Wechaty failed to start: {type(error).__name__}: {text}"


class _Bot(IsolatedWechaty):
    """Routes Wechaty's typed hooks (awaited by its event bridge) to the adapter."""

    def __init__(self, adapter: WechatyTransport, options: Any) -> None:
        super().__init__(options)
        self._adapter = adapter

    async def on_login(self, contact: Any) -> None:
        self._adapter._logged_in.set()

    async def on_friendship(self, friendship: Any) -> None:
        await self._adapter._guard(self._adapter._friendship(friendship))

    async def on_message(self, msg: Any) -> None:
        await self._adapter._guard(self._adapter._message(msg))


class WechatyTransport:
    """One account on Wechaty. Satisfies :class:`bot.transport.base.Transport`."""

    def __init__(
        self,
        account_id: str,
        puppet: Puppet | str,
        *,
        token: str | None = None,
        endpoint: str | None = None,
        login_timeout: float = 30.0,
    ) -> None:
        self.account_id = account_id
        self.login_timeout = login_timeout
        self._bot = _Bot(
            self, new_wechaty_options(name=account_id, puppet=puppet, token=token, endpoint=endpoint)
        )
        self._sink: EventSink | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._logged_in = asyncio.Event()
        self._pending_echo: Counter[tuple[str, str]] = Counter()
        self._sent_ids: deque[str] = deque(maxlen=_ECHO_MEMORY)
        self.errors: list[BaseException] = []

    @property
    def self_id(self) -> str:
        return str(self._bot.puppet.self_id())

    @property
    def local_puppet(self) -> LocalPuppet | None:
        puppet = getattr(self._bot, "_puppet", None)  # None once stopped: Wechaty.puppet would raise
        return puppet if isinstance(puppet, LocalPuppet) else None

    async def start(self, sink: EventSink) -> None:
        self._sink = sink
        self._start_task = asyncio.create_task(self._bot.start(), name=f"wechaty-start-{self.account_id}")
        login = asyncio.create_task(self._logged_in.wait())
        deadline = asyncio.get_running_loop().time() + self.login_timeout
        pending: set[asyncio.Future[Any]] = {self._start_task, login}
        while login in pending:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                break
            _, pending = await asyncio.wait(pending, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
            if self._start_task not in pending and self._start_task.exception() is not None:
                login.cancel()
                error = self._start_task.exception()
                await self.stop()
                raise TransportError(f"account {self.account_id}: {explain_start_failure(error)}") from error
        if login not in pending:
            log.info("account %s logged in as %s", self.account_id, self.self_id)
            return
        login.cancel()
        await self.stop()
        raise TransportError(
            f"account {self.account_id}: no login within {self.login_timeout:.0f}s "
            "(is the account logged in on the puppet service, and is the token right?)"
        )

    async def stop(self) -> None:
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):  # being torn down
                await self._start_task
        try:
            if self._bot._puppet is not None:
                await self._bot.stop()
        finally:
            scheduler = self._bot._plugin_manager.scheduler
            if scheduler.running:
                scheduler.shutdown(wait=False)

    async def settle(self) -> None:
        puppet = self.local_puppet
        if puppet is not None:
            await puppet.drain()

    async def accept(self, request: FriendRequest) -> None:
        friendship = self._bot.Friendship.load(request.friendship_id)
        await friendship.ready()
        await friendship.accept()

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        target = (
            self._bot.Room.load(conversation_id)
            if is_room_id(conversation_id)
            else self._bot.Contact.load(conversation_id)
        )
        echo_key = (conversation_id, text)
        self._pending_echo[echo_key] += 1
        try:
            await target.ready()
            message = await target.say(text)
        except NotFriendError as exc:
            raise RecipientUnavailable(str(exc)) from exc
        except Exception as exc:
            raise TransportError(f"send to {conversation_id} failed: {exc}") from exc
        finally:
            self._pending_echo[echo_key] -= 1
            if self._pending_echo[echo_key] <= 0:
                del self._pending_echo[echo_key]
        message_id = getattr(message, "message_id", None)
        if message_id:
            self._sent_ids.append(message_id)
        return message_id

    async def find_room(self, topic: str) -> str | None:
        """The id of the room whose topic is exactly ``topic``."""
        for room in await self._bot.Room.find_all():
            if room.payload is not None and room.payload.topic == topic:
                return str(room.room_id)
        return None

    async def tag_contact(self, contact_id: str, tag: str, *, remove: bool = False) -> None:
        """Mirror a tag onto the platform contact (puppets without tag support raise TransportError)."""
        # wechaty 0.10.7's Tag.add/remove are broken (NameError on Contact; remove is not awaited),
        # so this goes to the puppet's tag API, which is what they would call
        try:
            if remove:
                await self._bot.puppet.tag_contact_remove(tag, contact_id)
            else:
                await self._bot.puppet.tag_contact_add(tag, contact_id)
        except Exception as exc:
            raise TransportError(f"tagging {contact_id} on the platform failed: {exc}") from exc

    async def recall(self, message_id: str) -> bool:
        message = self._bot.Message.load(message_id)
        await message.ready()
        return bool(await message.recall())

    # -- inbound --------------------------------------------------------------------------------

    async def _guard(self, handling: Any) -> None:
        """pyee swallows handler exceptions; log them loudly and keep them for tests."""
        try:
            await handling
        except Exception as exc:
            self.errors.append(exc)
            log.exception("account %s: event handler failed", self.account_id)

    async def _deliver(self, event: InboundEvent) -> None:
        if self._sink is not None:
            await self._sink(event)

    async def _friendship(self, friendship: Any) -> None:
        kind = friendship.type()
        if kind not in (FriendshipType.FRIENDSHIP_TYPE_RECEIVE, FriendshipType.FRIENDSHIP_TYPE_CONFIRM):
            return
        contact = friendship.contact()
        await contact.ready()
        await self._deliver(
            FriendRequest(
                friendship_id=friendship.friendship_id,
                contact=Contact(contact.contact_id, contact.name or "", contact.payload.alias or ""),
                hello=friendship.hello() or "",
                confirmed=kind == FriendshipType.FRIENDSHIP_TYPE_CONFIRM,
            )
        )

    async def _message(self, msg: Any) -> None:
        payload = msg.payload
        if payload is None or msg.text() is None:
            return
        self_id = self.self_id
        from_self = payload.from_id == self_id
        room_id = payload.room_id or ""
        conversation_id = room_id or (payload.to_id if from_self else payload.from_id)
        if from_self and self._is_echo(msg.message_id, conversation_id, msg.text()):
            return  # our own send coming back: already in the outgoing log, never handled again
        talker = msg.talker()
        if not from_self:
            # Wechaty caches contact payloads forever; re-read so a new name or remark shows up
            await talker.ready(force_sync=True)
        await self._deliver(
            TextMessage(
                message_id=msg.message_id,
                conversation_id=conversation_id,
                talker=Contact(
                    talker.contact_id, talker.name or "", (talker.payload.alias if talker.payload else "")
                ),
                text=msg.text(),
                from_self=from_self,
                in_room=bool(room_id),
            )
        )

    def _is_echo(self, message_id: str, conversation_id: str, text: str) -> bool:
        return message_id in self._sent_ids or (conversation_id, text) in self._pending_echo
