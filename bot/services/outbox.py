"""Sends planned messages when they fall due: claim atomically, re-check, render, send, mark.

Text is rendered at send time, so a template fix or a profile change applies to what is still
pending. Claiming is a single atomic update, so two dispatchers never send the same row.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.errors import TemplateError
from bot.services.messenger import Delivery, Messenger
from bot.services.reach import AUTOMATED_KINDS, SEND, Verdict
from storage.db import Database
from storage.models import Customer, ScheduledMessage
from storage.repositories import DELIVERY_UNKNOWN, Events, Outbox, OutgoingLog

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Composed:
    conversation_id: str
    text: str
    # a long message split for chat: each part is sent under its own idempotency key
    parts: tuple[str, ...] = ()
    # the outgoing kind when it differs from the row's (an owed-reply nudge goes out as an alert)
    kind: str | None = None


class Composer(Protocol):
    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        """Render the message, or return None when it is no longer wanted. ``customer`` is None only
        for rows addressed to no customer (a supervisor's digest)."""
        ...


UnreachableHandler = Callable[[int, str], Awaitable[object]]
SentHandler = Callable[[ScheduledMessage], Awaitable[None]]
UndeliverableHandler = Callable[[ScheduledMessage, str], Awaitable[None]]


class Gate(Protocol):
    async def verdict(self, session: AsyncSession, row: ScheduledMessage, now: datetime) -> Verdict: ...


class Dispatcher:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        messenger: Messenger,
        composers: Mapping[str, Composer],
        on_unreachable: UnreachableHandler,
        on_sent: SentHandler | None = None,
        gate: Gate | None = None,
        on_undeliverable: UndeliverableHandler | None = None,
    ) -> None:
        self.db = db
        self.clock = clock
        self.messenger = messenger
        self.composers = composers
        self.on_unreachable = on_unreachable
        self.on_sent = on_sent
        self.gate = gate
        self.on_undeliverable = on_undeliverable
        # accounts whose transport is connected; None: all. Rows of other accounts wait, pending.
        self.available: Callable[[], Collection[str] | None] = lambda: None
        # set when the process is stopping: finish the row in hand, claim no more
        self.stopping = False

    async def next_due_at(self) -> datetime | None:
        async with self.db.transaction() as session:
            return await Outbox(session).next_due_at(self.available())

    async def recover(self) -> int:
        """Settle rows a crashed process left ``claimed``. Never re-sends blindly: the outgoing log
        says whether the send started. Returns how many rows were settled."""
        now = self.clock.now()
        settled = 0
        async with self.db.transaction() as session:
            rows = (
                await session.exec(select(ScheduledMessage).where(ScheduledMessage.status == "claimed"))
            ).all()
            outgoing = OutgoingLog(session)
            for row in rows:
                sent = await outgoing.by_key(row.idempotency_key)
                if sent is None or sent.status == "failed":
                    row.status = "pending"  # never reached the platform: safe to try again
                elif sent.status == "sent":
                    row.status = "sent"
                else:  # "sending": the platform may or may not have it. At most once: do not retry.
                    reason = f"interrupted while sending; {DELIVERY_UNKNOWN}"
                    unsure = await outgoing.unknown(sent.id or 0, reason)
                    if unsure is not None and unsure.status == "sent":  # its echo came back
                        row.status = "sent"
                    else:
                        row.status, row.last_error = "failed", reason
                row.updated_at = now
                settled += 1
        return settled

    async def run_due(self) -> int:
        """Send everything due now, earliest first. Returns how many rows were processed."""
        processed = 0
        while not self.stopping:
            now = self.clock.now()
            async with self.db.transaction() as session:
                row = await Outbox(session).claim_next_due(now, self.available())
            if row is None:
                return processed
            processed += 1
            try:
                await self._deliver(row)
            except Exception as exc:
                log.exception("dispatching scheduled message %s failed", row.id)
                await self._mark(row, "failed", f"internal error: {exc}")
        return processed

    async def _deliver(self, row: ScheduledMessage) -> None:
        now = self.clock.now()
        if now > row.not_after:
            await self._mark(row, "expired", "not sent before not_after")
            return
        composer = self.composers.get(row.kind)
        if composer is None:
            await self._mark(row, "failed", f"no composer for kind {row.kind!r}")
            return
        async with self.db.transaction() as session:
            customer = await session.get(Customer, row.customer_id) if row.customer_id is not None else None
            if customer is not None and customer.paused_at is not None and row.kind in AUTOMATED_KINDS:
                await Outbox(session).mark(row.id or 0, "paused", now, "automation paused for this customer")
                return
            verdict = SEND if self.gate is None else await self.gate.verdict(session, row, now)
            if not verdict.send:
                assert verdict.not_before is not None
                if verdict.not_before <= row.not_after:
                    await Outbox(session).defer(row.id or 0, verdict.not_before, now, verdict.reason)
                    return
                await Outbox(session).mark(
                    row.id or 0, "expired", now, f"could not be sent in time: {verdict.reason}"
                )
                undeliverable = verdict.reason
            else:
                undeliverable = ""
        if undeliverable:
            if self.on_undeliverable is not None:
                await self.on_undeliverable(row, undeliverable)
            return
        async with self.db.transaction() as session:
            customer = await session.get(Customer, row.customer_id) if row.customer_id is not None else None
            template_error = ""
            if row.customer_id is not None and (customer is None or customer.deleted_at is not None):
                composed = None
            else:
                try:
                    composed = await composer.compose(row, customer, session)
                except TemplateError as exc:
                    composed, template_error = None, str(exc)
        if template_error:
            await self._fail(row, template_error, alert=True)
            return
        if composed is None:
            await self._mark(row, "cancelled", "no longer wanted")
            return
        if composed.parts:
            for number, part in enumerate(composed.parts, start=1):
                result = await self.messenger.send(
                    account_id=row.account_id,
                    conversation_id=composed.conversation_id,
                    text=part,
                    kind=composed.kind or row.kind,
                    key=f"{row.idempotency_key}:{number}",
                    customer_id=row.customer_id,
                )
                if result.delivery not in (Delivery.SENT, Delivery.DUPLICATE):
                    break
        else:
            result = await self.messenger.send(
                account_id=row.account_id,
                conversation_id=composed.conversation_id,
                text=composed.text,
                kind=composed.kind or row.kind,
                key=row.idempotency_key,
                customer_id=row.customer_id,
            )
        if result.delivery is Delivery.NOT_CONNECTED:
            # nothing went out; the row waits for the account to reconnect (claims skip it till then)
            async with self.db.transaction() as session:
                await Outbox(session).defer(row.id or 0, self.clock.now(), self.clock.now(), result.error)
        elif result.delivery in (Delivery.SENT, Delivery.DUPLICATE):
            await self._mark(row, "sent")
            if self.on_sent is not None and result.delivery is Delivery.SENT:
                await self.on_sent(row)
        elif result.delivery is Delivery.UNKNOWN:
            await self._fail(row, f"{DELIVERY_UNKNOWN}: {result.error}; check the chat", alert=True)
        elif result.delivery is Delivery.UNREACHABLE:
            await self._fail(row, "customer is no longer a friend", alert=False)
            if row.customer_id is not None:
                await self.on_unreachable(row.customer_id, result.error)
        else:
            await self._fail(row, f"send failed: {result.error}", alert=True)

    async def _fail(self, row: ScheduledMessage, error: str, *, alert: bool) -> None:
        """Mark the row failed, log ``<kind>_failed`` for the digest, and tell the rep if asked."""
        now = self.clock.now()
        async with self.db.transaction() as session:
            await Outbox(session).mark(row.id or 0, "failed", now, error)
            await Events(session).record(
                row.account_id, f"{row.kind}_failed", now, customer_id=row.customer_id, data={"error": error}
            )
        if alert and self.on_undeliverable is not None:
            await self.on_undeliverable(row, error)

    async def _mark(self, row: ScheduledMessage, status: str, error: str = "") -> None:
        async with self.db.transaction() as session:
            await Outbox(session).mark(row.id or 0, status, self.clock.now(), error)
