"""Every message the bot sends goes through here: one idempotency key, one outgoing-log row."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime

from bot.clock import Clock
from bot.errors import RecipientUnavailable, TransportError
from bot.transport.base import Transport
from storage.db import Database
from storage.models import Customer
from storage.repositories import Events, OutgoingLog

log = logging.getLogger(__name__)


class Delivery(enum.Enum):
    SENT = "sent"
    DUPLICATE = "duplicate"  # this key was sent (or attempted with unknown outcome) before
    UNREACHABLE = "unreachable"  # the customer deleted or blocked the rep
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
        except TransportError as exc:
            await self._fail(row.id, str(exc))
            log.warning("send %s to %s failed: %s", kind, conversation_id, exc)
            return SendResult(Delivery.FAILED, str(exc))
        now = self.clock.now()
        async with self.db.transaction() as session:
            await OutgoingLog(session).finish(row.id, platform_message_id=message_id, at=now)
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

    async def _fail(self, row_id: int, error: str) -> None:
        async with self.db.transaction() as session:
            await OutgoingLog(session).fail(row_id, error)
