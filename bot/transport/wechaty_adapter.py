"""The only module that talks to the Wechaty SDK: maps Wechaty objects to our transport events.

The real ``wechaty.Wechaty`` class drives both puppets: our in-process :class:`LocalPuppet` and the
gRPC ``wechaty-puppet-service``. The adapter also owns the connection: it reports whether the
account can send (``connected``), reconnects a service account whose stream ended, and turns a
lost connection into ``NotConnected`` (nothing sent) or ``DeliveryUnknown`` (maybe sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from typing import Any

from wechaty_puppet import (
    FileBox,
    FriendshipType,
    MessageType,
    MiniProgramPayload,
    ScanStatus,
    UrlLinkPayload,
)

from bot.errors import DeliveryUnknown, NotConnected, RecipientUnavailable, TransportError
from bot.media import Attachment, MediaType
from bot.redaction import redact
from bot.transport.backoff import Backoff
from bot.transport.base import (
    ConnectionListener,
    Contact,
    EventSink,
    FriendRequest,
    InboundEvent,
    LoginEvent,
    LoginListener,
    LoginStatus,
    TextMessage,
)
from bot.transport.local_puppet import LocalPuppet, NotFriendError
from bot.transport.wechaty_compat import (
    IsolatedWechaty,
    Puppet,
    TrackingEmitter,
    UrlLink,
    new_wechaty_options,
    say_mini_program,
    sync_contact,
)

log = logging.getLogger(__name__)

_ECHO_MEMORY = 2000
# how long a contact's name and remark, re-read from the puppet, are taken as current: a round trip
# to the puppet on every message cost the hot path as much as reading the message itself
CONTACT_REFRESH_SECONDS = 600.0
_STOP_TIMEOUT = 5.0  # seconds


def is_room_id(conversation_id: str) -> bool:
    return conversation_id.endswith("@chatroom")


def explain_start_failure(error: BaseException | None) -> str:
    """Turn what the Wechaty stack raises at startup into an actionable sentence (never with the
    token: a service may quote the one it rejected)."""
    text = str(error)
    status, message = getattr(error, "status", None), getattr(error, "message", None)
    if status is not None and message is not None:  # grpclib's GRPCError: (status, message, details)
        text = f"{getattr(status, 'name', status)}: {message}"
    text = redact(text)
    if "ping endpoint" in text or isinstance(error, (ConnectionError, OSError)):
        return (
            f"cannot reach the puppet service ({text}); check the endpoint host:port and that it is running"
        )
    if type(error).__name__ == "StreamTerminatedError":
        # reachable, but it hangs up on the first call: a TLS server meeting our plaintext client
        return (
            f"the puppet service closed the connection at once ({text}): it probably expects TLS, "
            "and this client speaks plaintext gRPC only; run the service with TLS disabled "
            "(WECHATY_PUPPET_SERVICE_NO_TLS_INSECURE_SERVER=true)"
        )
    if "token" in text.lower():
        return (
            f"the puppet service rejected the token ({text}); "
            "check the account's token in config or its SALESBOT_<ID>_TOKEN variable"
        )
    return f"Wechaty failed to start: {type(error).__name__}: {text}"


def _refused(error: BaseException) -> bool:
    """The service could not be reached at all: nothing was sent."""
    return isinstance(error, ConnectionRefusedError)


def _broken_off(error: BaseException) -> bool:
    """The connection broke during the call: the service may have sent the message."""
    return isinstance(error, (ConnectionError, BrokenPipeError)) or type(error).__name__ in (
        "StreamTerminatedError",
        "ProtocolError",
    )


class _Bot(IsolatedWechaty):
    """Routes Wechaty's typed hooks (awaited by its event bridge) to the adapter."""

    def __init__(self, adapter: WechatyTransport, options: Any) -> None:
        super().__init__(options)
        self._adapter = adapter

    async def init_puppet_event_bridge(self, puppet: Any) -> None:
        await super().init_puppet_event_bridge(puppet)
        # Wechaty hands only the first login to on_login; a reconnect logs in again
        puppet.on("login", lambda payload: self._adapter._on_login())
        puppet.on("logout", lambda payload: self._adapter._on_logout())
        # a puppet that logs in by QR code: the code to scan, then scanned / confirmed / expired
        puppet.on("scan", lambda payload: self._adapter._on_scan(payload.status, payload.qrcode or ""))

    async def on_login(self, contact: Any) -> None:
        self._adapter._on_login()

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
        backoff: Backoff | None = None,
    ) -> None:
        self.account_id = account_id
        self.login_timeout = login_timeout
        self.endpoint = endpoint
        self.backoff = backoff or Backoff()
        self.on_connection: ConnectionListener | None = None
        self.on_login: LoginListener | None = None
        self._qr_shown = False  # a QR code is waiting for a scan (a login timeout then expires it)
        self._puppet, self._token = puppet, token
        self._bot = self._new_bot()
        self._sink: EventSink | None = None
        self._start_task: asyncio.Task[None] | None = None
        self._logged_in = asyncio.Event()
        self._connected = False
        self._stopping = False
        self._watchdog: asyncio.Task[None] | None = None
        self._pending_echo: Counter[tuple[str, str]] = Counter()
        self._sent_ids: deque[str] = deque(maxlen=_ECHO_MEMORY)
        # contact id -> when last re-read past the caches, the oldest first; a read older than
        # CONTACT_REFRESH_SECONDS is as good as none and is dropped (not one entry per contact ever)
        self._contact_read: OrderedDict[str, float] = OrderedDict()
        # friend requests being handled, as their event loaded them: accepting one needs no second
        # read of its payload (a gRPC call per request on the puppet service)
        self._handling: dict[str, Any] = {}
        # contacts this account accepted whose payload has not been re-read since (its friend flag
        # still says stranger), the oldest first; and how many accepts more may trust the flag
        # without a re-read (see accept())
        self._accepted: OrderedDict[str, None] = OrderedDict()
        self._trusted_accepts = 0
        self.monotonic: Callable[[], float] = time.monotonic  # for the refresh above; tests move it
        self.errors: list[BaseException] = []

    def _new_bot(self) -> _Bot:
        self._trusted_accepts = 0  # a new connection shows again whether its puppet fills the flag
        options = new_wechaty_options(
            name=self.account_id, puppet=self._puppet, token=self._token, endpoint=self.endpoint
        )
        return _Bot(self, options)

    @property
    def self_id(self) -> str:
        return str(self._bot.puppet.self_id())

    @property
    def connected(self) -> bool:
        """Logged in with a live connection: sends can go out now."""
        return self._connected

    @property
    def local_puppet(self) -> LocalPuppet | None:
        puppet = getattr(self._bot, "_puppet", None)  # None once stopped: Wechaty.puppet would raise
        return puppet if isinstance(puppet, LocalPuppet) else None

    async def start(self, sink: EventSink) -> None:
        """Connect and log in. After a failed start it may be called again: each try gets a fresh
        Wechaty (the library's objects are not made to start twice)."""
        if self._start_task is not None:
            self._bot = self._new_bot()
            self._stopping = False
            self._logged_in.clear()
        if not await self._reachable():
            raise TransportError(
                f"account {self.account_id}: cannot reach the puppet service at {self.endpoint}; "
                "check the endpoint host:port and that it is running"
            )
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
            if not self._start_task.done():
                # a service puppet's start() lives as long as its event stream: when it ends, the
                # connection is gone; the library would sleep 60 s and start again, we back off
                self._watchdog = asyncio.create_task(
                    self._keep_connected(), name=f"wechaty-watchdog-{self.account_id}"
                )
            return
        login.cancel()
        if self._qr_shown:  # nobody scanned in time: the next try shows a new code
            self._qr_shown = False
            self._tell_login(LoginEvent(LoginStatus.EXPIRED))
        await self.stop()
        raise TransportError(
            f"account {self.account_id}: no login within {self.login_timeout:.0f}s "
            "(is the account logged in on the puppet service, and is the token right?)"
        )

    async def stop(self) -> None:
        self._stopping = True
        self._connected = False
        if self._watchdog is not None and not self._watchdog.done():
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
        if self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()  # no new events from here on
            with contextlib.suppress(asyncio.CancelledError, Exception):  # being torn down
                await self._start_task
        with contextlib.suppress(TimeoutError):  # let what was received finish, within reason
            await asyncio.wait_for(self._drain(), _STOP_TIMEOUT)
        puppet = self._bot._puppet
        try:
            if puppet is not None:
                # a service puppet tells the gateway it stops; a gone gateway must not hold us up
                await asyncio.wait_for(self._bot.stop(), _STOP_TIMEOUT)
        except (Exception, TimeoutError) as exc:
            log.debug("account %s: the puppet did not stop cleanly (%s)", self.account_id, exc or type(exc))
            channel = getattr(puppet, "channel", None)
            if channel is not None:
                channel.close()
            self._bot._puppet = None
        finally:
            scheduler = self._bot._plugin_manager.scheduler
            if scheduler.running:
                scheduler.shutdown(wait=False)

    async def settle(self) -> None:
        await self._drain()

    async def _drain(self) -> None:
        """Wait for the handling of every event received so far (puppets with a TrackingEmitter)."""
        # the emitter's name in wechaty-puppet-service, which LocalPuppet shares
        events = getattr(getattr(self._bot, "_puppet", None), "_event_stream", None)
        if isinstance(events, TrackingEmitter):
            await events.drain()

    async def accept(self, request: FriendRequest) -> None:
        if not self._connected:
            raise NotConnected(f"account {self.account_id} is not connected")
        friendship = self._handling.get(request.friendship_id)
        if friendship is None:  # accepted later (a reconnect, a restart): read it again
            friendship = self._bot.Friendship.load(request.friendship_id)
        try:
            await friendship.ready()  # a no-op for the one being handled: its event read it
            await friendship.accept()
        except Exception as exc:
            self._raise_connection_error(exc)
            raise
        # the contact is a friend now: its friend flag is what tells a later failed send apart.
        # Re-reading it costs two gRPC calls. Once a re-read right after an accept has shown the
        # flag filled, the next _TRUSTED_ACCEPTS accepts are only noted (a send to the contact
        # counts it as a friend); then a re-read checks again, and one that shows a stranger
        # (a puppet that fills the flag late, or never) ends the trust.
        contact = friendship.contact()
        if self._trusted_accepts > 0:
            self._trusted_accepts -= 1
            self._note_accepted(contact.contact_id)
            return
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_FRIEND_CHECK_SECONDS):
                await sync_contact(self._bot, contact)
            self._read_fresh(contact)
            if _friend_flag(contact):
                self._trusted_accepts = _TRUSTED_ACCEPTS
            else:  # the flag lags or is never filled: accepts noted before prove nothing either
                self._trusted_accepts = 0
                self._accepted.clear()

    def _note_accepted(self, contact_id: str) -> None:
        accepted = self._accepted
        accepted[contact_id] = None
        accepted.move_to_end(contact_id)
        while len(accepted) > _ACCEPTED_MEMORY:
            accepted.popitem(last=False)

    def _read_fresh(self, contact: Any) -> None:
        """``contact`` was just re-read past the caches: its friend flag is the puppet's word."""
        self._accepted.pop(contact.contact_id, None)

    def _raise_connection_error(self, exc: Exception) -> None:
        """Turn a lost connection into NotConnected (nothing reached the service) or DeliveryUnknown
        (the call broke off midway), and let the watchdog reconnect."""
        if _refused(exc):
            self._lose_connection(str(exc))
            raise NotConnected(f"account {self.account_id}: service unreachable ({exc})") from exc
        if not_logged_in(exc):
            # the service is up but the account is logged out there (a handover, a logout the
            # event stream has not told yet): nothing was sent; log in again, then send
            self._lose_connection("the account is not logged in on the puppet service")
            raise NotConnected(f"account {self.account_id}: not logged in on the puppet service") from exc
        if _broken_off(exc):
            self._lose_connection(str(exc) or type(exc).__name__)
            raise DeliveryUnknown(
                f"account {self.account_id}: connection broke during the call ({exc})"
            ) from exc

    async def send_text(self, conversation_id: str, text: str) -> str | None:
        return await self._send(conversation_id, text, text)

    async def send_attachment(self, conversation_id: str, attachment: Attachment) -> str | None:
        """An image or file (a FileBox), a link card (UrlLink) or a mini-program card, said to the
        contact or room the way Wechaty says any message."""
        return await self._send(conversation_id, attachment.describe(), _wechaty_message(attachment))

    async def _send(self, conversation_id: str, text: str, message: Any) -> str | None:
        """Say ``message`` (``text`` describes it for echo matching), mapping failures to ours."""
        if not self._connected:
            raise NotConnected(f"account {self.account_id} is not connected")
        target = (
            self._bot.Room.load(conversation_id)
            if is_room_id(conversation_id)
            else self._bot.Contact.load(conversation_id)
        )
        echo_key = (conversation_id, text)
        self._pending_echo[echo_key] += 1
        was_friend: bool | None = None
        try:
            await target.ready()
            was_friend = _friend_flag(target)
            if was_friend is False and conversation_id in self._accepted:
                was_friend = True  # accepted since this payload was read (see accept())
            if isinstance(message, MiniProgramPayload):
                message_id = await say_mini_program(self._bot, conversation_id, message)
            else:
                said = await target.say(message)
                message_id = getattr(said, "message_id", None)
        except NotFriendError as exc:
            raise RecipientUnavailable(str(exc)) from exc
        except Exception as exc:
            self._raise_connection_error(exc)
            if former_friend(exc):  # puppets word it differently; never rely on their classes
                raise RecipientUnavailable(f"{conversation_id} is no longer a friend") from exc
            if was_friend and await self._no_longer_friend(target):
                raise RecipientUnavailable(f"{conversation_id} is no longer a friend") from exc
            raise TransportError(f"send to {conversation_id} failed: {exc}") from exc
        finally:
            self._pending_echo[echo_key] -= 1
            if self._pending_echo[echo_key] <= 0:
                del self._pending_echo[echo_key]
        if message_id:
            self._sent_ids.append(message_id)
        return message_id

    async def _no_longer_friend(self, contact: Any) -> bool:
        """After a send failed in words we do not recognise: whether the puppet now reports the
        contact as not a friend. Asked only of a contact it reported as a friend before the send,
        so a puppet that never fills the flag (protobuf's default is false) churns nobody."""
        try:
            async with asyncio.timeout(_FRIEND_CHECK_SECONDS):
                await sync_contact(self._bot, contact)
            self._read_fresh(contact)
        except Exception as exc:  # the check is a best effort; the send error stands
            log.info(
                "account %s: friend state unknown after a failed send (%s)",
                self.account_id,
                redact(str(exc)),
            )
            return False
        return _friend_flag(contact) is False

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

    # -- connection -----------------------------------------------------------------------------

    def _on_login(self) -> None:
        first = not self._logged_in.is_set()
        self._logged_in.set()
        if first:  # the puppet and Wechaty's typed hook both report one login
            self._tell_login(LoginEvent(LoginStatus.LOGGED_IN))
        if not self._connected and not self._stopping:
            self._set_connected(True, "logged in")

    def _on_logout(self) -> None:
        self._logged_in.clear()
        if not self._stopping:
            self._tell_login(LoginEvent(LoginStatus.LOGGED_OUT))
        if self._connected:
            self._set_connected(False, "logged out")

    def _on_scan(self, status: ScanStatus | int, qr: str) -> None:
        code = status.value if isinstance(status, ScanStatus) else int(status)
        if code == ScanStatus.Waiting.value and qr:
            self._qr_shown = True
            self._tell_login(LoginEvent(LoginStatus.WAITING, qr))
        elif code == ScanStatus.Scanned.value:  # Confirmed is followed by the login itself
            self._tell_login(LoginEvent(LoginStatus.SCANNED))
        elif code in (ScanStatus.Timeout.value, ScanStatus.Cancel.value):
            self._qr_shown = False
            self._tell_login(LoginEvent(LoginStatus.EXPIRED))

    def _tell_login(self, event: LoginEvent) -> None:
        if event.status == LoginStatus.LOGGED_IN:
            self._qr_shown = False
        if self.on_login is not None:
            self.on_login(self.account_id, event)

    def _lose_connection(self, reason: str) -> None:
        """A call found the service gone before the event stream noticed: stop sending now and let
        the watchdog reconnect."""
        if self._connected:
            self._set_connected(False, f"connection lost ({reason})")
        if self._watchdog is not None and self._start_task is not None and not self._start_task.done():
            self._start_task.cancel()

    def _set_connected(self, connected: bool, reason: str) -> None:
        self._connected = connected
        if connected:
            self.backoff.reset()
        if self.on_connection is not None:
            self.on_connection(self.account_id, connected, reason)

    async def _keep_connected(self) -> None:
        """Watch the service connection; when it drops, reconnect with exponential backoff."""
        while not self._stopping:
            assert self._start_task is not None
            await asyncio.wait({self._start_task})
            error = None if self._start_task.cancelled() else self._start_task.exception()
            reason = f"{type(error).__name__}: {error}" if error else "the event stream ended"
            log.warning("account %s: connection to the puppet service lost (%s)", self.account_id, reason)
            self._logged_in.clear()
            if self._connected:
                self._set_connected(False, f"connection lost ({reason})")
            await self._reconnect()

    async def _reconnect(self) -> None:
        while not self._stopping:
            delay = self.backoff.next_delay()
            log.info("account %s: reconnecting in %.1fs", self.account_id, delay)
            await asyncio.sleep(delay)
            if not await self._reachable():
                continue
            puppet = self._bot.puppet
            channel = getattr(puppet, "channel", None)
            if channel is not None:
                channel.close()  # the broken one; start() opens a new channel
            self._start_task = asyncio.create_task(puppet.start(), name=f"wechaty-restart-{self.account_id}")
            login = asyncio.create_task(self._logged_in.wait())
            try:
                await asyncio.wait(
                    {self._start_task, login}, timeout=self.login_timeout, return_when=asyncio.FIRST_COMPLETED
                )
            finally:
                login.cancel()
            if self._logged_in.is_set():
                log.info("account %s: reconnected", self.account_id)
                return
            if not self._start_task.done():
                self._start_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._start_task
                log.warning(
                    "account %s: no login within %.0fs of reconnecting", self.account_id, self.login_timeout
                )
            else:
                error = None if self._start_task.cancelled() else self._start_task.exception()
                log.warning("account %s: reconnect failed: %s", self.account_id, explain_start_failure(error))

    async def _reachable(self) -> bool:
        """A non-blocking probe before the client's own (blocking, 3 s) telnet check."""
        if not self.endpoint:
            return True
        host, _, port = self.endpoint.rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), 3)
        except (TimeoutError, OSError, ValueError):
            return False
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return True

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
        request = FriendRequest(
            friendship_id=friendship.friendship_id,
            contact=Contact(contact.contact_id, contact.name or "", contact.payload.alias or ""),
            hello=friendship.hello() or "",
            confirmed=kind == FriendshipType.FRIENDSHIP_TYPE_CONFIRM,
        )
        if request.confirmed:  # nothing to accept
            await self._deliver(request)
            return
        key = request.friendship_id
        self._handling[key] = friendship
        try:
            await self._deliver(request)
        finally:
            if self._handling.get(key) is friendship:  # not a later event's with the same id
                del self._handling[key]

    async def _message(self, msg: Any) -> None:
        payload = msg.payload
        if payload is None or msg.text() is None:
            return
        self_id = self.self_id
        from_self = payload.from_id == self_id
        if from_self and payload.type not in _TEXT_TYPES:
            return  # an image, file or card the account sent (ours echoed, or the rep's): not a command
        room_id = payload.room_id or ""
        conversation_id = room_id or (payload.to_id if from_self else payload.from_id)
        # our own send coming back: it confirms the send in the outgoing log, never runs as a command
        echo = from_self and self._is_echo(msg.message_id, conversation_id, msg.text())
        talker = msg.talker()
        if not from_self:
            # Wechaty caches contact payloads forever, and the puppet service its own: re-read
            # past both now and then so a new name or remark shows up (within
            # CONTACT_REFRESH_SECONDS; the first message too: a rep often sets a remark right
            # after accepting, before the customer's first reply)
            now, read = self.monotonic(), self._contact_read.get(talker.contact_id)
            if read is None or now - read >= CONTACT_REFRESH_SECONDS:
                await self._refresh(talker)
                self._note_read(talker.contact_id, now)  # failed or not: not again for a while
            elif talker.payload is None:
                await talker.ready()
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
                echo=echo,
            )
        )

    def _note_read(self, contact_id: str, now: float) -> None:
        reads = self._contact_read
        reads[contact_id] = now
        reads.move_to_end(contact_id)
        while len(reads) > 1 and now - next(iter(reads.values())) >= CONTACT_REFRESH_SECONDS:
            reads.popitem(last=False)

    async def _refresh(self, talker: Any) -> None:
        """Re-read a customer's name and remark, best effort: the message matters more. A refresh
        that fails or hangs leaves the name read before (Wechaty's own read, when there was none)."""
        try:
            async with asyncio.timeout(_FRIEND_CHECK_SECONDS):
                await sync_contact(self._bot, talker)
            self._read_fresh(talker)
        except Exception as exc:  # any puppet's error: the message goes on
            log.warning(
                "account %s: re-reading contact %s failed (%s); its name may be out of date",
                self.account_id,
                talker.contact_id,
                str(exc) or type(exc).__name__,
            )
            if talker.payload is None:
                await talker.ready()

    def _is_echo(self, message_id: str, conversation_id: str, text: str) -> bool:
        return message_id in self._sent_ids or (conversation_id, text) in self._pending_echo


# what puppets say when the recipient removed the account (English and Chinese wordings seen from
# puppet services and the official mock); matched in the error's text, whatever its class
_FORMER_FRIEND = re.compile(
    r"not (?:a |your )?friend|no longer (?:a )?friend|is a stranger|contact (?:was )?deleted|"
    r"非好友|不是好友|不是你的好友|已被删除|被对方删除|对方已拒收|拉黑",
    re.IGNORECASE,
)


_FRIEND_CHECK_SECONDS = 5.0
_ACCEPTED_MEMORY = 10_000  # accepted contacts remembered until their payload is read again
_TRUSTED_ACCEPTS = 20  # accepts noted without a re-read after one that showed the friend flag
# what may be a command or a text echo (puppets that leave the type out send UNSPECIFIED)
_TEXT_TYPES = (MessageType.MESSAGE_TYPE_TEXT, MessageType.MESSAGE_TYPE_UNSPECIFIED)


def _wechaty_message(attachment: Attachment) -> Any:
    """What ``say`` sends for an attachment (a mini program: its payload, see say_mini_program)."""
    a = attachment
    if a.type in (MediaType.IMAGE, MediaType.FILE):
        assert a.path is not None
        return FileBox.from_file(str(a.path), name=a.path.name)
    if a.type is MediaType.LINK:
        return UrlLink(
            UrlLinkPayload(
                url=a.url, title=a.title, description=a.description or None, thumbnailUrl=a.thumbnail or None
            )
        )
    return MiniProgramPayload(
        appid=a.appid,
        username=a.username,
        title=a.title,
        pagePath=a.page_path,
        description=a.description or None,
        thumbUrl=a.thumbnail or None,
        iconUrl=a.icon or None,
    )


def _friend_flag(contact: Any) -> bool | None:
    """The friend flag of a loaded contact (rooms and puppets without it: None)."""
    payload = getattr(contact, "payload", None)
    friend = getattr(payload, "friend", None)
    return friend if isinstance(friend, bool) else None


# what puppets say when the account has no logged-in user (wechaty-puppet: "not logged in, no
# userSelf yet"; the mock and the service gateway: "not logged in"; some puppets in Chinese)
_NOT_LOGGED_IN = re.compile(r"not (?:yet )?logged[ -]?in|not login|未登录|未登陆|登录已失效", re.IGNORECASE)


def _said(exc: BaseException) -> str:
    """An error's words: its text plus, on the puppet service, its gRPC status details."""
    details = getattr(exc, "details", None)
    if callable(details):
        try:
            details = details()
        except Exception:
            details = None
    return f"{exc} {details or ''}"


def not_logged_in(exc: BaseException) -> bool:
    """Whether a failed call says the account is not logged in on the puppet (nothing was sent;
    worth trying again once logged in). Matched on the words, as the service puppet reports them
    (an UNKNOWN gRPC status carrying the puppet's message), never on one puppet's classes."""
    return bool(_NOT_LOGGED_IN.search(_said(exc)))


def former_friend(exc: BaseException) -> bool:
    """Whether a failed send says the recipient is no longer a friend (on the puppet service the
    reason arrives as gRPC status details, not as an exception class)."""
    return bool(_FORMER_FRIEND.search(_said(exc)))
