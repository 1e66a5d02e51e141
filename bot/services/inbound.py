"""The "customer wrote" use case: everything one customer message changes, in one transaction.

Reading the message (CPU only) happens first, outside the transaction. Then one unit of work
records the message (a replay stops here), moves a first reply up the pipeline, drops the
follow-ups it answers, keeps a template's promise the message takes up (the auto reply), logs the
reading and plans the rep's suggestion, flags a hot lead (alert, countdown held, nudge), records a
referral (alert with a thank-you to /send), plans the owed-reply nudge otherwise, and applies an
opt-out with its alert; a first reply with nothing else to report gets the coaching card (the
next best step). Console messages and the auto reply are outbox rows of this same
transaction: after a crash the replayed event either finds all of it or none of it. A database
that refuses the unit for now (busy, a conflict) gets it again from the start, so a burst never
loses a message. The caller sends the rows planned to go at once when this commits. On SQLite the
unit is a group commit (storage/group_commit.py) unless the message opts out.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.faults import crash_point
from bot.objections.classifier import Classification
from bot.services.alerts import ConsoleMessages, OwedReplyNudges, opted_out, pushes_stopped
from bot.services.coach import Coach
from bot.services.customers import CustomerService
from bot.services.hot_leads import BUYING_SIGNAL, HotLead, HotLeads, why_hot
from bot.services.objections import ObjectionService
from bot.services.promises import Kept, Promises
from bot.services.referrals import REFERRAL, Referrals
from bot.services.sequences import SequenceService
from bot.transport.base import TextMessage
from storage.db import Database
from storage.models import Customer


@dataclass(frozen=True)
class Handled:
    """What a customer's message led to (None: it was a replay, already handled)."""

    customer_id: int
    reading: Classification
    send_now: list[int] = field(default_factory=list)  # rows to send once committed (replies, console)
    wake_at: datetime | None = None  # the earliest later row planned (a nudge)


class CustomerWrote:
    def __init__(
        self,
        db: Database,
        customers: CustomerService,
        sequences: SequenceService,
        objections: ObjectionService,
        owed: OwedReplyNudges,
        console: ConsoleMessages,
        promises: Promises,
        hot_leads: HotLeads,
        referrals: Referrals,
        coach: Coach,
    ) -> None:
        self.db = db
        self.customers = customers
        self.sequences = sequences
        self.objections = objections
        self.owed = owed
        self.console = console
        self.promises = promises
        self.hot_leads = hot_leads
        self.referrals = referrals
        self.coach = coach

    async def __call__(self, account_id: str, message: TextMessage) -> Handled | None:
        reading = self.objections.read(message.text)
        # a group commit: everything this unit makes happen outside (a reply, the rep's console
        # messages) goes out after the dispatcher's durable reservation, whose flush covers this
        # unit; an opt-out is durable at once, so no machine crash can forget it
        opt_out = reading.opt_out or reading.opt_out_soft
        # a busy database: the whole unit again
        return await self.db.retrying_unit(
            functools.partial(self._record, account_id, message, reading), group_commit=not opt_out
        )

    async def _record(
        self, account_id: str, message: TextMessage, reading: Classification, session: AsyncSession
    ) -> Handled | None:
        recorded = await self.customers.record_inbound(session, account_id, message)
        if recorded is None:
            return None  # a replay: everything it changed committed with its record
        customer, wrote_before = recorded
        first_reply = wrote_before is None
        assert customer.id is not None
        crash_point("inbound.recorded")
        await self.sequences.customer_replied(session, customer, wrote_before)
        kept = None if reading.opt_out else await self.promises.answer(session, customer, message)
        suggestion = await self.objections.record_reading(session, customer, message, reading, self.console)
        hot = await self._hot_lead(session, customer, message, reading, kept)
        referred = (
            await self.referrals.record(session, customer, message)
            if REFERRAL in reading.signals and not reading.opt_out
            else None
        )
        # a customer who asked for no more messages is owed no reply; one the bot answered or a
        # hot lead (which has its own nudge) gets no second nudge
        due = (
            None
            if reading.opt_out or kept is not None or hot is not None
            else await self.owed.customer_wrote(session, customer, message.message_id)
        )
        alert = await self._stop_pushing(session, customer, message, reading)
        reply = kept.reply_id if kept is not None else None
        hot_alert = hot.alert_id if hot is not None else None
        # the next best step after a first reply, unless the console already has something
        # about this message to act on (a suggestion, a hot lead, a referral, an opt-out)
        told = (suggestion, hot_alert, referred, alert) != (None, None, None, None)
        card = await self.coach.first_reply(session, customer) if first_reply and not told else None
        rows = (reply, suggestion, hot_alert, referred, alert, card)
        send_now = [row for row in rows if row is not None]
        later = [at for at in (due, hot.nudge_at if hot else None) if at is not None]
        return Handled(customer.id, reading, send_now, min(later) if later else None)

    async def _hot_lead(
        self,
        session: AsyncSession,
        customer: Customer,
        message: TextMessage,
        reading: Classification,
        kept: Kept | None,
    ) -> HotLead | None:
        """A buying signal, or a kept promise that alerts the rep ("1" to a countdown step)."""
        if kept is not None and kept.reply_id is not None and kept.rule.alert_rep:
            why = f"TA回复了“{kept.keyword}”，要你马上安排（已自动告诉TA你会尽快确认）"
            source = f"hook:{kept.rule.key}"
        elif BUYING_SIGNAL in reading.signals and not (reading.opt_out or reading.opt_out_soft):
            why, source = why_hot(message.text), "reading"
        else:
            return None
        offer_script = reading.label is None or not self.objections.config.objections.enabled
        return await self.hot_leads.flag(
            session, customer, message, why, source=source, offer_script=offer_script
        )

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
