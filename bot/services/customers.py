"""Customer bookkeeping shared by the use cases: creation, inbound messages, churn."""

from __future__ import annotations

from datetime import datetime

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.domain.stages import Pipeline
from bot.services.lifecycle_state import LifecycleStates
from bot.transport.base import Contact, TextMessage
from storage.db import Database
from storage.models import Customer
from storage.repositories import Customers, Events, Outbox, StageHistory


async def ensure_customer(
    session: AsyncSession, account_id: str, contact: Contact, first_stage: str, now: datetime, actor: str
) -> tuple[Customer, bool]:
    """The customer for this contact, created in ``first_stage`` if new. Returns (customer, created)."""
    customers = Customers(session)
    customer = await customers.by_wechat_id(account_id, contact.contact_id)
    if customer is not None:
        if contact.name and customer.display_name != contact.name:
            customer.display_name = contact.name
        if contact.alias and customer.remark != contact.alias:
            customer.remark = contact.alias
        return customer, False
    customer = await customers.add(
        Customer(
            account_id=account_id,
            wechat_id=contact.contact_id,
            display_name=contact.name,
            remark=contact.alias,
            stage=first_stage,
            added_at=now,
        )
    )
    assert customer.id is not None
    await StageHistory(session).record(customer.id, None, first_stage, actor, "new friend", now)
    await Events(session).record(account_id, "customer_created", now, customer_id=customer.id)
    return customer, True


class CustomerService:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        pipeline: Pipeline,
        on_first_reply: str = "",
        lifecycle: LifecycleStates | None = None,
    ) -> None:
        self.db = db
        self.lifecycle = lifecycle
        self.clock = clock
        self.pipeline = pipeline
        self.first_stage = pipeline.first
        self.on_first_reply = on_first_reply

    async def record_inbound(
        self, session: AsyncSession, account_id: str, message: TextMessage
    ) -> tuple[Customer, datetime | None] | None:
        """Log a customer's message once and note when they last spoke; a first reply may move
        them up the pipeline. Part of the inbound event's transaction. Returns the customer and
        when they wrote before this message (None: this is their first), or None when this
        message was already recorded (a replay: nothing else may happen twice)."""
        now = self.clock.now()
        customer, _ = await ensure_customer(
            session, account_id, message.talker, self.first_stage, now, actor="system"
        )
        fresh = await Events(session).record(
            account_id,
            "message_in",
            now,
            customer_id=customer.id,
            text=message.text,
            external_id=message.message_id,
        )
        if not fresh:
            return None
        wrote_before = customer.last_inbound_at
        first_reply = wrote_before is None
        customer.last_inbound_at = now
        target = self.on_first_reply
        if first_reply and target and self.pipeline.is_before(customer.stage, target):
            await StageHistory(session).move(customer, target, "system", "first reply", now)
        if self.lifecycle is not None:  # a dormant or lost customer who writes is active again
            await self.lifecycle.update(session, customer, now, reason="message")
        return customer, wrote_before

    async def record_rep_message(self, account_id: str, message: TextMessage) -> None:
        """The rep wrote to a customer by hand: it counts as contact (owed replies, digests)."""
        now = self.clock.now()

        async def record(session: AsyncSession) -> None:
            contact = Contact(message.conversation_id, "", "")
            customer, _ = await ensure_customer(
                session, account_id, contact, self.first_stage, now, actor="rep"
            )
            fresh = await Events(session).record(
                account_id,
                "rep_message",
                now,
                customer_id=customer.id,
                text=message.text,
                external_id=message.message_id,
            )
            if fresh:
                customer.last_outbound_at = now

        await self.db.retrying_unit(record)  # a busy database: the whole unit again

    async def mark_deleted(self, session: AsyncSession, customer_id: int, reason: str) -> Customer | None:
        """The customer removed the rep: stop everything planned for them. Returns the customer,
        or None when this was known already."""
        now = self.clock.now()
        customer = await Customers(session).get(customer_id)
        if customer is None or customer.deleted_at is not None:
            return None
        customer.deleted_at = now
        cancelled = await Outbox(session).cancel_for_customer(customer_id, now, "customer deleted the rep")
        await Events(session).record(
            customer.account_id,
            "customer_deleted",
            now,
            customer_id=customer_id,
            data={"reason": reason, "cancelled": cancelled},
        )
        if self.lifecycle is not None:
            await self.lifecycle.update(session, customer, now, reason="deleted")
        return customer
