"""Every message the bot sends goes through here: one idempotency key, one outgoing-log row."""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.domain.kinds import CONTACT_KINDS
from bot.errors import DeliveryUnknown, NotConnected, RecipientUnavailable, TransportError
from bot.hooks import Hooks
from bot.media import Attachment
from bot.transport.base import TextMessage, Transport
from storage.db import Database, RelaxedWriter
from storage.repositories import DELIVERY_UNKNOWN, Customers, Events, Outbox, OutgoingLog

log = logging.getLogger(__name__)

# how long after a send its echo may still arrive (a puppet catching up after a reconnect)
ECHO_WINDOW = timedelta(hours=1)


class Delivery(enum.Enum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # this key was sent (or attempted with unknown outcome) before
    UNREACHABLE = "unreachable"  # the customer deleted or blocked the rep
    NOT_CONNECTED = "not_connected"  # the account is offline: nothing was sent, try again later
    UNKNOWN = "unknown"  # the connection broke midway: maybe delivered, so never sent again
    FAILED = "failed"


@dataclass(frozen=True)
class Sent:
    """What hook listeners (the browser simulator's live view) learn about each delivered message."""

    account_id: str
    conversation_id: str
    kind: str
    text: str
    at: datetime


@dataclass(frozen=True)
class SendResult:
    delivery: Delivery
    error: str = ""
    platform_message_id: str | None = None


@dataclass(frozen=True)
class Reservation:
    """A send about to happen, recorded in the outgoing log (status "sending") and committed
    before the transport is called: a crash never leads to a blind second send.
    ``outgoing_id`` is None when the key was used before (nothing goes out: a duplicate)."""

    outgoing_id: int | None
    account_id: str
    conversation_id: str
    text: str
    kind: str
    key: str
    customer_id: int | None
    # sent instead of the text (which then only describes it, for the log)
    attachment: Attachment | None = None


@dataclass(frozen=True)
class Transmission:
    """What the transport said about one reserved send (no database work)."""

    delivery: Delivery
    error: str = ""
    platform_message_id: str | None = None


class Messenger:
    """Sends in steps so that callers can fold the database work into their own transactions:
    :meth:`reserve` (in a transaction), :meth:`transmit` (transport only), :meth:`settle` (in a
    transaction; it is :meth:`record_outcome` then :meth:`record_contact`) and, after that commit,
    :meth:`announce`. :meth:`send` does all of it; the dispatcher reserves a batch in one commit,
    records each outcome before the next send and the contacts with the next batch."""

    def __init__(
        self, db: Database, clock: Clock, transports: Mapping[str, Transport], hooks: Hooks | None = None
    ) -> None:
        self.db = db
        self.clock = clock
        self.transports = transports
        self.hooks = hooks or Hooks()

    async def send(
        self,
        *,
        account_id: str,
        conversation_id: str,
        text: str,
        kind: str,
        key: str,
        customer_id: int | None = None,
    ) -> SendResult:
        async with self.db.transaction() as session:
            reservation = await self.reserve(
                session,
                account_id=account_id,
                conversation_id=conversation_id,
                text=text,
                kind=kind,
                key=key,
                customer_id=customer_id,
            )
        transmission = await self.transmit(reservation)
        if transmission.delivery is Delivery.DUPLICATE:
            return SendResult(Delivery.DUPLICATE)
        async with self.db.transaction() as session:
            result, sent = await self.settle(session, reservation, transmission)
        await self.announce(sent)
        return result

    async def reserve(
        self,
        session: AsyncSession,
        *,
        account_id: str,
        conversation_id: str,
        text: str,
        kind: str,
        key: str,
        customer_id: int | None = None,
        attempt_group: str | None = None,
        attachment: Attachment | None = None,
    ) -> Reservation:
        outgoing_id = await OutgoingLog(session).begin(
            account_id=account_id,
            customer_id=customer_id,
            conversation_id=conversation_id,
            kind=kind,
            text=text,
            idempotency_key=key,
            at=self.clock.now(),
            attempt_group=attempt_group,
        )
        return Reservation(outgoing_id, account_id, conversation_id, text, kind, key, customer_id, attachment)

    async def reserve_many(
        self, session: AsyncSession, sends: list[Reservation], attempt_group: str
    ) -> list[Reservation]:
        """:meth:`reserve` for a batch in one statement (the dispatcher's). ``sends`` carry no
        outgoing id yet; returns them with theirs (None: a duplicate), in the same order."""
        ids = await OutgoingLog(session).begin_many(
            [
                {
                    "account_id": r.account_id,
                    "customer_id": r.customer_id,
                    "conversation_id": r.conversation_id,
                    "kind": r.kind,
                    "text": r.text,
                    "idempotency_key": r.key,
                    "attempt_group": attempt_group,
                }
                for r in sends
            ],
            self.clock.now(),
        )
        return [dataclasses.replace(r, outgoing_id=i) for r, i in zip(sends, ids, strict=True)]

    async def transmit(self, reservation: Reservation) -> Transmission:
        """Hand a committed reservation to the account's transport."""
        r = reservation
        if r.outgoing_id is None:
            log.info("not sending %s again (key %s)", r.kind, r.key)
            return Transmission(Delivery.DUPLICATE)
        try:
            transport = self.transports[r.account_id]
            if r.attachment is not None:
                message_id = await transport.send_attachment(r.conversation_id, r.attachment)
            else:
                message_id = await transport.send_text(r.conversation_id, r.text)
        except RecipientUnavailable as exc:
            return Transmission(Delivery.UNREACHABLE, str(exc))
        except DeliveryUnknown as exc:
            log.warning("send %s to %s: %s", r.kind, r.conversation_id, exc)
            return Transmission(Delivery.UNKNOWN, str(exc))
        except NotConnected as exc:
            log.info("not sending %s to %s now: %s", r.kind, r.conversation_id, exc)
            return Transmission(Delivery.NOT_CONNECTED, str(exc))
        except TransportError as exc:
            log.warning("send %s to %s failed: %s", r.kind, r.conversation_id, exc)
            return Transmission(Delivery.FAILED, str(exc))
        return Transmission(Delivery.SENT, platform_message_id=message_id)

    async def settle(
        self, session: AsyncSession, reservation: Reservation, transmission: Transmission
    ) -> tuple[SendResult, Sent | None]:
        """Write a transmission's outcome (:meth:`record_outcome`, then :meth:`record_contact`).
        Returns the result and, for a delivered message, what to :meth:`announce` after commit."""
        result = await self.record_outcome(session, reservation, transmission)
        return result, await self.record_contact(session, reservation, result)

    async def record_outcome(
        self, session: AsyncSession, reservation: Reservation, transmission: Transmission
    ) -> SendResult:
        """The outgoing-log row's outcome alone: the one write that must land before the next
        send of a batch starts (see Dispatcher.run_due)."""
        r, t = reservation, transmission
        if r.outgoing_id is None or t.delivery is Delivery.DUPLICATE:
            return SendResult(Delivery.DUPLICATE)
        outgoing = OutgoingLog(session)
        if t.delivery is Delivery.UNKNOWN:
            settled = await outgoing.unknown(r.outgoing_id, f"{DELIVERY_UNKNOWN}: {t.error}")
            if settled is None or settled.status != "sent":
                return SendResult(Delivery.UNKNOWN, t.error)
            return SendResult(Delivery.SENT)  # its echo already came back: it was delivered
        if t.delivery is Delivery.UNREACHABLE:
            await outgoing.fail(r.outgoing_id, f"unreachable: {t.error}")
            return SendResult(t.delivery, t.error)
        if t.delivery is not Delivery.SENT:
            # a definite non-send (offline, refused): the key may be used again
            await outgoing.fail(r.outgoing_id, t.error)
            return SendResult(t.delivery, t.error)
        # the status alone (no indexed column): the time and platform id follow in record_contact
        await outgoing.set_status(r.outgoing_id, "sent")
        return SendResult(Delivery.SENT, platform_message_id=t.platform_message_id)

    async def record_outcome_relaxed(
        self, writer: RelaxedWriter, reservation: Reservation, transmission: Transmission
    ) -> SendResult:
        """:meth:`record_outcome` in its own relaxed commit. A delivered send, the usual case, is
        one statement on ``writer`` (no session); any other outcome takes a relaxed transaction."""
        r, t = reservation, transmission
        if r.outgoing_id is not None and t.delivery is Delivery.SENT:
            await writer.execute(OutgoingLog.SET_STATUS, {"b_id": r.outgoing_id, "b_status": "sent"})
            return SendResult(Delivery.SENT, platform_message_id=t.platform_message_id)
        async with self.db.relaxed_transaction() as session:
            return await self.record_outcome(session, reservation, transmission)

    async def record_contact(
        self, session: AsyncSession, reservation: Reservation, result: SendResult
    ) -> Sent | None:
        """For a delivered message: see :meth:`record_contacts`."""
        sent = await self.record_contacts(session, [(reservation, result)])
        return sent[0] if sent else None

    async def record_contacts(
        self, session: AsyncSession, sends: list[tuple[Reservation, SendResult]]
    ) -> list[Sent]:
        """For delivered messages: when they were sent and their platform ids, the customers' last
        contact and a ``message_out`` event each (digests count these), a few statements for any
        number. Returns what to :meth:`announce` once committed."""
        delivered = [
            (r, result)
            for r, result in sends
            if result.delivery is Delivery.SENT and r.outgoing_id is not None
        ]
        now = self.clock.now()
        await OutgoingLog(session).finish_many(
            [(r.outgoing_id or 0, result.platform_message_id) for r, result in delivered], now
        )
        await Customers(session).note_outbound(  # automated pushes are no contact
            [
                (r.customer_id, r.conversation_id)
                for r, _ in delivered
                if r.customer_id is not None and r.kind in CONTACT_KINDS
            ],
            now,
        )
        await Events(session).record_many(
            [
                {
                    "account_id": r.account_id,
                    "kind": "message_out",
                    "at": now,
                    "customer_id": r.customer_id,
                    "text": r.text,
                    "data": {"kind": r.kind},
                }
                for r, _ in delivered
            ]
        )
        return [Sent(r.account_id, r.conversation_id, r.kind, r.text, now) for r, _ in delivered]

    async def announce(self, sent: Sent | None) -> None:
        """Emit a delivered message as a :class:`Sent` hook event (the browser simulator's live
        view listens), after its commit."""
        if sent is not None:
            await self.hooks.emit(sent)

    async def record_echo(self, account_id: str, message: TextMessage) -> bool:
        """Note the account's own message coming back from the platform. Returns whether it was one
        of the bot's sends (so it is not handled as something the rep typed). An echo of a send whose
        outcome was unknown settles it as delivered, and its scheduled message as sent.

        The note is one statement committed relaxed, with no session (on SQLite mostly on the
        loop's own thread): every send of a puppet that echoes comes back, and a unit of work
        per echo cost more than the send itself. An echo confirms, it decides nothing: a machine
        crash may lose the note, never a message. Settling an unknown send is a unit of its own."""
        now = self.clock.now()
        statement, params = OutgoingLog.echo_note(
            account_id,
            platform_message_id=message.message_id,
            conversation_id=message.conversation_id,
            text=message.text,
            at=now,
            since=now - ECHO_WINDOW,
        )
        matched = await self.db.relaxed_returning(statement, params)
        if not matched:
            return False
        row_id, status = matched[0]
        if status == "unknown":
            await self.db.retrying_unit(functools.partial(self._settle_echo, account_id, int(row_id), now))
        return True

    async def _settle_echo(self, account_id: str, row_id: int, now: datetime, session: AsyncSession) -> None:
        row = await OutgoingLog(session).settle_echoed(row_id, now)
        if row is not None:
            await Outbox(session).confirm_delivered(row.idempotency_key, now)
            await Events(session).record(
                account_id,
                "message_out",
                now,
                customer_id=row.customer_id,
                text=row.text,
                data={"kind": row.kind, "confirmed_by_echo": True},
            )
            log.info("%s: echo confirms %s (key %s) was delivered", account_id, row.kind, row.idempotency_key)
