"""Every message the bot sends goes through here: one idempotency key, one outgoing-log row."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from bot.clock import Clock
from bot.errors import DeliveryUnknown, NotConnected, RecipientUnavailable, TransportError
from bot.transport.base import TextMessage, Transport
from storage.db import Database
from storage.models import Customer
from storage.repositories import DELIVERY_UNKNOWN, Events, Outbox, OutgoingLog

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
    """What observers (the browser simulator's live view) learn about each delivered message."""

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


class Messenger:
    def __init__(self, db: Database, clock: Clock, transports: Mapping[str, Transport]) -> None:
        self.db = db
        self.clock = clock
        self.transports = transports
        self.observers: list[Callable[[Sent], None]] = []

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
            row = await OutgoingLog(session).begin(
                account_id=account_id,
                customer_id=customer_id,
                conversation_id=conversation_id,
                kind=kind,
                text=text,
                idempotency_key=key,
                at=self.clock.now(),
            )
        if row is None or row.id is None:
            log.info("not sending %s again (key %s)", kind, key)
            return SendResult(Delivery.DUPLICATE)
        try:
            message_id = await self.transports[account_id].send_text(conversation_id, text)
        except RecipientUnavailable as exc:
            await self._fail(row.id, f"unreachable: {exc}")
            return SendResult(Delivery.UNREACHABLE, str(exc))
        except DeliveryUnknown as exc:
            async with self.db.transaction() as session:
                settled = await OutgoingLog(session).unknown(row.id, f"{DELIVERY_UNKNOWN}: {exc}")
            if settled is not None and settled.status == "sent":  # its echo already came back
                return await self._sent(row.id, account_id, conversation_id, text, kind, customer_id, None)
            log.warning("send %s to %s: %s", kind, conversation_id, exc)
            return SendResult(Delivery.UNKNOWN, str(exc))
        except NotConnected as exc:
            await self._fail(row.id, str(exc))  # a definite non-send: the key may be used again
            log.info("not sending %s to %s now: %s", kind, conversation_id, exc)
            return SendResult(Delivery.NOT_CONNECTED, str(exc))
        except TransportError as exc:
            await self._fail(row.id, str(exc))
            log.warning("send %s to %s failed: %s", kind, conversation_id, exc)
            return SendResult(Delivery.FAILED, str(exc))
        return await self._sent(row.id, account_id, conversation_id, text, kind, customer_id, message_id)

    async def _sent(
        self,
        row_id: int,
        account_id: str,
        conversation_id: str,
        text: str,
        kind: str,
        customer_id: int | None,
        message_id: str | None,
    ) -> SendResult:
        now = self.clock.now()
        async with self.db.transaction() as session:
            await OutgoingLog(session).finish(row_id, platform_message_id=message_id, at=now)
            if customer_id is not None:
                customer = await session.get(Customer, customer_id)
                if customer is not None and customer.wechat_id == conversation_id:
                    # only what reaches the customer's chat is contact (not a suggestion about them)
                    customer.last_outbound_at = now
            await Events(session).record(
                account_id, "message_out", now, customer_id=customer_id, text=text, data={"kind": kind}
            )
        for observer in self.observers:
            observer(Sent(account_id, conversation_id, kind, text, now))
        return SendResult(Delivery.SENT, platform_message_id=message_id)

    async def record_echo(self, account_id: str, message: TextMessage) -> bool:
        """Note the account's own message coming back from the platform. Returns whether it was one
        of the bot's sends (so it is not handled as something the rep typed). An echo of a send whose
        outcome was unknown settles it as delivered, and its scheduled message as sent."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            row, settled = await OutgoingLog(session).match_echo(
                account_id,
                platform_message_id=message.message_id,
                conversation_id=message.conversation_id,
                text=message.text,
                at=now,
                since=now - ECHO_WINDOW,
            )
            if row is None:
                return False
            if settled:
                await Outbox(session).confirm_delivered(row.idempotency_key, now)
                await Events(session).record(
                    account_id,
                    "message_out",
                    now,
                    customer_id=row.customer_id,
                    text=row.text,
                    data={"kind": row.kind, "confirmed_by_echo": True},
                )
                log.info(
                    "%s: echo confirms %s (key %s) was delivered", account_id, row.kind, row.idempotency_key
                )
        return True

    async def _fail(self, row_id: int, error: str) -> None:
        async with self.db.transaction() as session:
            await OutgoingLog(session).fail(row_id, error)
