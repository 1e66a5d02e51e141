"""An in-process puppet: the embedded default transport, the simulator's phone and the tests' backend.

It implements the parts of ``wechaty_puppet.Puppet`` that salesbot uses, so the real
``wechaty.Wechaty`` class drives it exactly as it drives a remote puppet service. It records every
message the bot sends and lets code inject what customers do: send a friend request, say something,
delete the rep.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wechaty_puppet import (
    ContactPayload,
    ContactType,
    EventFriendshipPayload,
    EventLoginPayload,
    EventLogoutPayload,
    EventMessagePayload,
    EventReadyPayload,
    EventScanPayload,
    FileBox,
    FriendshipPayload,
    FriendshipType,
    MessagePayload,
    MessageType,
    MiniProgramPayload,
    RoomPayload,
    ScanStatus,
)

from bot.clock import Clock
from bot.transport.wechaty_compat import Puppet, TrackingEmitter

FILEHELPER = "filehelper"
TRANSCRIPT_ENV = "SALESBOT_LOCAL_TRANSCRIPT"


class LocalPuppetError(Exception):
    """What the platform would answer when an operation is impossible."""


class NotFriendError(LocalPuppetError):
    """The customer deleted the rep: WeChat refuses the message."""


@dataclass
class SentMessage:
    message_id: str
    conversation_id: str
    text: str
    at: datetime
    recalled: bool = False
    # an image, file, link or mini-program card: {"type": ..., "name": ...} (text then describes it)
    attachment: dict[str, str] | None = None


@dataclass
class _Contact:
    contact_id: str
    name: str
    alias: str = ""
    friend: bool = False
    tags: set[str] = field(default_factory=set)


class LocalPuppet(Puppet):  # type: ignore[misc]
    """A WeChat account that lives in memory."""

    def __init__(
        self,
        clock: Clock,
        *,
        self_id: str = "rep",
        self_name: str = "销售顾问",
        echo_self_messages: bool = True,
        confirm_after_accept: bool = False,
        needs_scan: bool = False,
    ) -> None:
        """``needs_scan``: start shows a QR code and waits for :meth:`scan` and :meth:`confirm`, as
        a real account's puppet does."""
        super().__init__(name="local")
        self.needs_scan = needs_scan
        self._codes = itertools.count(1)
        self.clock = clock
        self._self_id = self_id
        self.echo_self_messages = echo_self_messages
        self.confirm_after_accept = confirm_after_accept
        self._event_stream = TrackingEmitter()
        self._ids = itertools.count(1)
        self._id_prefix = uuid.uuid4().hex[:10]
        self._contacts: dict[str, _Contact] = {
            self_id: _Contact(self_id, self_name, friend=True),
            FILEHELPER: _Contact(FILEHELPER, "文件传输助手", friend=True),
        }
        self._messages: dict[str, MessagePayload] = {}
        self._rooms: dict[str, RoomPayload] = {}
        self.recalled: set[str] = set()
        self._friendships: dict[str, FriendshipPayload] = {}
        self.sent: list[SentMessage] = []
        self.accepted: list[str] = []
        self.started = False
        self.fail_next_send: Exception | None = None
        # conversations the platform refuses every send to (a broken console chat, say)
        self.refuse_sends_to: set[str] = set()
        self.fail_next_accept: Exception | None = None
        self.online = True
        # every delivered message, one "conversation<TAB>text" line each, appended as it is sent: what
        # reached the "platform" survives the process being killed (the crash tests read it)
        self.transcript = os.environ.get(TRANSCRIPT_ENV, "")
        # the next send reaches the customer but the connection breaks before the answer comes back
        self.break_after_next_delivery = False
        self._held_echoes: list[str] = []

    # -- Puppet: lifecycle and events ---------------------------------------------------------

    def on(self, event_name: str, caller: Callable[..., Any]) -> None:
        self._event_stream.on(event_name, caller)

    def listener_count(self, event_name: str) -> int:
        return len(self._event_stream.listeners(event_name))

    def self_id(self) -> str:
        return self._self_id

    async def start(self) -> None:
        self.started = True
        if self.needs_scan:
            self.show_code()
            return
        self._event_stream.emit("login", EventLoginPayload(contact_id=self._self_id))
        self._event_stream.emit("ready", EventReadyPayload(data="ready"))

    async def stop(self) -> None:
        self.started = False

    async def logout(self) -> None:
        self.started = False

    async def ding(self, data: str | None = None) -> None:
        self._event_stream.emit("dong", data)

    # -- Puppet: contacts ---------------------------------------------------------------------

    async def contact_list(self) -> list[str]:
        return list(self._contacts)

    async def contact_payload(self, contact_id: str) -> ContactPayload:
        contact = self._contacts.get(contact_id)
        if contact is None:
            raise LocalPuppetError(f"unknown contact {contact_id}")
        return ContactPayload(
            id=contact.contact_id,
            name=contact.name,
            alias=contact.alias,
            friend=contact.friend,
            type=ContactType.CONTACT_TYPE_PERSONAL,
            weixin=contact.contact_id,
        )

    async def contact_payload_dirty(self, contact_id: str) -> None:
        return None

    async def contact_alias(self, contact_id: str, alias: str | None = None) -> str:
        contact = self._contacts[contact_id]
        if alias is not None:
            contact.alias = alias
        return contact.alias

    async def contact_tag_ids(self, contact_id: str) -> list[str]:
        return sorted(self._contacts[contact_id].tags)

    async def tag_contact_add(self, tag_id: str, contact_id: str) -> None:
        self._contacts[contact_id].tags.add(tag_id)

    async def tag_contact_remove(self, tag_id: str, contact_id: str) -> None:
        self._contacts[contact_id].tags.discard(tag_id)

    async def tag_contact_list(self, contact_id: str | None = None) -> list[str]:
        if contact_id is not None:
            return sorted(self._contacts[contact_id].tags)
        return sorted({tag for contact in self._contacts.values() for tag in contact.tags})

    async def tag_contact_delete(self, tag_id: str) -> None:
        for contact in self._contacts.values():
            contact.tags.discard(tag_id)

    async def dirty_payload(self, payload_type: Any, payload_id: str) -> None:
        return None

    # -- Puppet: friendships --------------------------------------------------------------------

    async def friendship_payload(
        self, friendship_id: str, payload: FriendshipPayload | None = None
    ) -> FriendshipPayload:
        if payload is not None:
            self._friendships[friendship_id] = payload
        return self._friendships[friendship_id]

    async def friendship_accept(self, friendship_id: str) -> None:
        if self.fail_next_accept is not None:
            error, self.fail_next_accept = self.fail_next_accept, None
            raise error
        request = self._friendships[friendship_id]
        self._contacts[request.contact_id].friend = True
        self.accepted.append(friendship_id)
        if self.confirm_after_accept:
            confirm_id = self._new_id("fr")
            self._friendships[confirm_id] = FriendshipPayload(
                id=confirm_id, contact_id=request.contact_id, type=FriendshipType.FRIENDSHIP_TYPE_CONFIRM
            )
            self._event_stream.emit("friendship", EventFriendshipPayload(friendship_id=confirm_id))

    # -- Puppet: messages -----------------------------------------------------------------------

    async def message_payload(self, message_id: str) -> MessagePayload:
        return self._messages[message_id]

    async def message_send_text(
        self, conversation_id: str, message: str, mention_ids: list[str] | None = None
    ) -> str:
        return self._deliver(conversation_id, message, MessageType.MESSAGE_TYPE_TEXT, None)

    async def message_send_file(self, conversation_id: str, file: FileBox) -> str:
        mime = str(getattr(file, "mediaType", "") or "")
        kind = "image" if mime.startswith("image/") else "file"
        label = "图片" if kind == "image" else "文件"
        message_type = (
            MessageType.MESSAGE_TYPE_IMAGE if kind == "image" else MessageType.MESSAGE_TYPE_ATTACHMENT
        )
        return self._deliver(
            conversation_id, f"[{label}] {file.name}", message_type, {"type": kind, "name": file.name}
        )

    async def message_send_url(self, conversation_id: str, url: str) -> str:
        card = json.loads(url)  # the UrlLinkPayload as JSON, as Wechaty hands it to every puppet
        title = str(card.get("title") or card.get("url"))
        return self._deliver(
            conversation_id,
            f"[链接] {title}",
            MessageType.MESSAGE_TYPE_URL,
            {"type": "link", "name": title, "url": str(card.get("url"))},
        )

    async def message_send_mini_program(self, conversation_id: str, mini_program: MiniProgramPayload) -> str:
        title = str(mini_program.title or mini_program.appid)
        return self._deliver(
            conversation_id,
            f"[小程序] {title}",
            MessageType.MESSAGE_TYPE_MINI_PROGRAM,
            {"type": "miniprogram", "name": title},
        )

    def _deliver(
        self, conversation_id: str, message: str, message_type: MessageType, attachment: dict[str, str] | None
    ) -> str:
        """One message to a contact or room, with the platform's refusals and failure modes."""
        if self.fail_next_send is not None:
            error, self.fail_next_send = self.fail_next_send, None
            raise error
        if not self.online:
            raise ConnectionRefusedError("the account is offline")
        if conversation_id in self.refuse_sends_to:
            raise LocalPuppetError(f"sending to {conversation_id} was refused")
        if conversation_id in self._rooms:
            message_id = self._store_message(
                self._self_id, "", message, room_id=conversation_id, message_type=message_type
            )
        else:
            contact = self._contacts.get(conversation_id)
            if contact is None:
                raise LocalPuppetError(f"unknown conversation {conversation_id}")
            if not contact.friend:
                raise NotFriendError(f"{contact.name} is not a friend (they deleted the account)")
            message_id = self._store_message(
                self._self_id, conversation_id, message, message_type=message_type
            )
        self.sent.append(
            SentMessage(message_id, conversation_id, message, self.clock.now(), attachment=attachment)
        )
        if self.transcript:
            _append(self.transcript, f"{conversation_id}\t{message}\n")
        if self.break_after_next_delivery:
            self.break_after_next_delivery = False
            self._held_echoes.append(message_id)  # its echo comes once the connection is back
            raise ConnectionResetError("connection reset while waiting for the answer")
        if self.echo_self_messages:
            self._event_stream.emit("message", EventMessagePayload(message_id=message_id))
        return message_id

    # -- login by QR code (injected) ------------------------------------------------------------

    def show_code(self) -> str:
        """A fresh login code to scan (its content, as a real puppet's: a login URL)."""
        code = f"https://login.weixin.qq.com/l/local-{self._id_prefix}-{next(self._codes)}"
        self._scan(ScanStatus.Waiting, code)
        return code

    def scan(self) -> None:
        """The rep scanned the code with the phone; the login waits for their confirmation."""
        self._scan(ScanStatus.Scanned)

    def expire_code(self) -> None:
        self._scan(ScanStatus.Timeout)

    def confirm(self) -> None:
        """The rep confirmed on the phone: the account logs in."""
        self._scan(ScanStatus.Confirmed)
        self.online = True
        self._event_stream.emit("login", EventLoginPayload(contact_id=self._self_id))
        self._event_stream.emit("ready", EventReadyPayload(data="ready"))

    def _scan(self, status: ScanStatus, code: str = "") -> None:
        self._event_stream.emit("scan", EventScanPayload(status=status, qrcode=code or None))

    # -- connection (injected) ------------------------------------------------------------------

    def go_offline(self) -> None:
        """The account drops off (phone offline, logged out): sends are refused until it is back."""
        self.online = False
        self._event_stream.emit("logout", EventLogoutPayload(contact_id=self._self_id, data="offline"))

    def go_online(self) -> None:
        """The account is back: it logs in again and echoes what it delivered meanwhile."""
        self.online = True
        self._event_stream.emit("login", EventLoginPayload(contact_id=self._self_id))
        held, self._held_echoes = self._held_echoes, []
        if self.echo_self_messages:
            for message_id in held:
                self._event_stream.emit("message", EventMessagePayload(message_id=message_id))

    async def message_recall(self, message_id: str) -> bool:
        if message_id not in self._messages:
            return False
        self.recalled.add(message_id)
        for sent in self.sent:
            if sent.message_id == message_id:
                sent.recalled = True
        return True

    async def message_search(self, query: Any = None) -> list[str]:
        return list(self._messages)

    # -- Puppet: rooms ----------------------------------------------------------------------------

    async def room_search(self, query: Any = None) -> list[str]:
        return list(self._rooms)

    async def room_list(self) -> list[str]:
        return list(self._rooms)

    async def room_payload(self, room_id: str) -> RoomPayload:
        return self._rooms[room_id]

    async def room_members(self, room_id: str) -> list[str]:
        return list(self._rooms[room_id].member_ids)

    # -- what customers and the rep do (injection API) ----------------------------------------

    def add_contact(self, contact_id: str, name: str, *, friend: bool = False) -> None:
        existing = self._contacts.get(contact_id)
        if existing is None:
            self._contacts[contact_id] = _Contact(contact_id, name, friend=friend)
        else:
            existing.name = name

    def create_room(self, topic: str, member_ids: list[str]) -> str:
        """A group chat the account is in (e.g. a team console room). Returns the room id."""
        room_id = f"{self._new_id('room')}@chatroom"
        self._rooms[room_id] = RoomPayload(
            id=room_id, topic=topic, owner_id=self._self_id, member_ids=[self._self_id, *member_ids]
        )
        return room_id

    def request_friendship(self, contact_id: str, name: str, hello: str = "") -> str:
        """A customer asks to become the rep's friend. Returns the friendship id."""
        self.add_contact(contact_id, name)
        friendship_id = self._new_id("fr")
        self._friendships[friendship_id] = FriendshipPayload(
            id=friendship_id, contact_id=contact_id, hello=hello, type=FriendshipType.FRIENDSHIP_TYPE_RECEIVE
        )
        self.replay_friendship(friendship_id)
        return friendship_id

    def confirm_friendship(self, contact_id: str, name: str) -> str:
        """The rep accepted on the phone: the platform reports only an established friendship."""
        self.add_contact(contact_id, name, friend=True)
        friendship_id = self._new_id("fr")
        self._friendships[friendship_id] = FriendshipPayload(
            id=friendship_id, contact_id=contact_id, type=FriendshipType.FRIENDSHIP_TYPE_CONFIRM
        )
        self.replay_friendship(friendship_id)
        return friendship_id

    def replay_friendship(self, friendship_id: str) -> None:
        """Emit a friendship event again, as puppets do after a reconnect."""
        self._event_stream.emit("friendship", EventFriendshipPayload(friendship_id=friendship_id))

    def customer_says(self, contact_id: str, text: str, message_id: str | None = None) -> str:
        """The customer sends a text; give ``message_id`` to replay a platform event (the same
        message delivered again, as after a crash)."""
        if contact_id not in self._contacts:
            raise LocalPuppetError(f"unknown contact {contact_id}")
        message_id = self._store_message(contact_id, self._self_id, text, message_id=message_id)
        self._event_stream.emit("message", EventMessagePayload(message_id=message_id))
        return message_id

    def rep_types(self, conversation_id: str, text: str) -> str:
        """The rep types in a chat on their phone: a self message the bot receives."""
        if conversation_id in self._rooms:
            message_id = self._store_message(self._self_id, "", text, room_id=conversation_id)
        else:
            message_id = self._store_message(self._self_id, conversation_id, text)
        self._event_stream.emit("message", EventMessagePayload(message_id=message_id))
        return message_id

    def customer_deletes(self, contact_id: str) -> None:
        """The customer removes the rep. WeChat sends no event; later sends fail."""
        self._contacts[contact_id].friend = False

    def has_contact(self, contact_id: str) -> bool:
        return contact_id in self._contacts

    def is_friend(self, contact_id: str) -> bool:
        contact = self._contacts.get(contact_id)
        return bool(contact and contact.friend)

    def _new_id(self, prefix: str) -> str:
        # ids are process-unique: python-wechaty de-duplicates message ids across all bots
        return f"{prefix}-{self._id_prefix}-{next(self._ids)}"

    def _store_message(
        self,
        from_id: str,
        to_id: str,
        text: str,
        room_id: str = "",
        message_id: str | None = None,
        message_type: MessageType = MessageType.MESSAGE_TYPE_TEXT,
    ) -> str:
        message_id = message_id or self._new_id("msg")
        self._messages[message_id] = MessagePayload(
            id=message_id,
            text=text,
            timestamp=int(self.clock.now().timestamp()),
            type=message_type,
            from_id=from_id,
            to_id=to_id,
            room_id=room_id,
            mention_ids=[],
        )
        return message_id


def _append(path: str, line: str) -> None:
    """One short local append (the transcript), written through to the OS before the call returns."""
    with open(path, "a", encoding="utf-8") as transcript:
        transcript.write(line)
