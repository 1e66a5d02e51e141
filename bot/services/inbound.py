"""The "customer wrote" use case: everything one customer message changes, in one transaction.

Reading the message (CPU only) happens first, outside the transaction. Then one unit of work
records the message (a replay stops here), moves a first reply up the pipeline, drops the
follow-ups it answers, plans the owed-reply nudge, logs the reading and plans the rep's
suggestion, and applies an opt-out with its alert. Console messages are outbox rows of this same
transaction: after a crash the replayed event either finds all of it or none of it. The caller
sends the planned console rows once this commits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.faults import crash_point
from bot.objections.classifier import Classification
from bot.services.alerts import ConsoleMessages, OwedReplyNudges, opted_out, pushes_stopped
from bot.services.customers import CustomerService
from bot.services.objections import ObjectionService
from bot.services.sequences import SequenceService
from bot.transport.base import TextMessage
from storage.db import Database
from storage.models import Customer


@dataclass(frozen=True)
class Handled:
    """What a customer's message led to (None: it was a replay, already handled)."""

    customer_id: int
    reading: Classification
    send_now: list[int] = field(default_factory=list)  # console rows to send once committed
    wake_at: datetime | None = None  # the earliest later row planned (the owed-reply nudge)


class CustomerWrote:
    def __init__(
        self,
        db: Database,
        customers: CustomerService,
        sequences: SequenceService,
        objections: ObjectionService,
        owed: OwedReplyNudges,
        console: ConsoleMessages,
    ) -> None:
        self.db = db
        self.customers = customers
        self.sequences = sequences
        self.objections = objections
        self.owed = owed
        self.console = console

    async def __call__(self, account_id: str, message: TextMessage) -> Handled | None:
        reading = self.objections.read(message.text)
        async with self.db.transaction() as session:
            customer = await self.customers.record_inbound(session, account_id, message)
            if customer is None or customer.id is None:
                return None  # a replay: everything it changed committed with its record
            crash_point("inbound.recorded")
            await self.sequences.customer_replied(session, customer.id)
            # a customer who asked for no more messages is owed no reply
            due = (
                None
                if reading.opt_out
                else await self.owed.customer_wrote(session, customer, message.message_id)
            )
            suggestion = await self.objections.record_reading(
                session, customer, message, reading, self.console
            )
            alert = await self._stop_pushing(session, customer, message, reading)
            send_now = [row for row in (suggestion, alert) if row is not None]
            return Handled(customer.id, reading, send_now, due)

    async def _stop_pushing(
        self, session: AsyncSession, customer: Customer, message: TextMessage, reading: Classification
    ) -> int | None:
        """An opt-out holds all automation, a soft one the pushes; either way the rep is told.
        Returns the alert row to send (None: nothing to stop, or told already)."""
        if reading.opt_out:
            hold, wording, key = self.sequences.hold_all, opted_out, "opt_out"
            reason = f"opt-out: {message.text}"
        elif reading.opt_out_soft:
            hold, wording, key = self.sequences.hold_pushes, pushes_stopped, "opt_out_soft"
            reason = f"asked to be pushed less: {message.text}"
        else:
            return None
        held = await hold(session, customer, actor="customer", reason=reason)
        return await self.console.alert(
            session,
            customer.account_id,
            wording(customer, message.text, held),
            key=f"{key}:{message.message_id}",
            customer_id=customer.id,
        )
