"""What the dispatcher learns that the rep must hear: a customer who removed them, a message that
did not (or may not have) gone out. Each is one transaction: the state change and the console
alert row commit together, and the caller sends the alert once committed."""

from __future__ import annotations

from dataclasses import dataclass

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.domain.stages import Pipeline
from bot.hooks import CustomerUnreachable, Undeliverable
from bot.services.alerts import ConsoleMessages, deleted_rep, undeliverable
from bot.services.customers import CustomerService
from storage.db import Database
from storage.models import ScheduledMessage
from storage.repositories import DELIVERY_UNKNOWN, Customers, Tags


@dataclass(frozen=True)
class Reported:
    account_id: str
    customer_id: int | None  # the customer the alert is about
    alert_id: int | None  # the planned alert row (None: reported before)


class DeliveryAlerts:
    def __init__(
        self, db: Database, customers: CustomerService, console: ConsoleMessages, pipeline: Pipeline
    ) -> None:
        self.db = db
        self.customers = customers
        self.console = console
        self.pipeline = pipeline

    async def customer_unreachable(self, event: CustomerUnreachable) -> Reported | None:
        """The customer removed the rep: their pending messages are cancelled and the rep told,
        together. None when this was known already."""
        async with self.db.transaction() as session:
            customer = await self.customers.mark_deleted(session, event.customer_id, event.reason)
            if customer is None:
                return None
            tags = [t.value for t in await Tags(session).for_customer(event.customer_id)]
            planned = await self.console.alert(
                session,
                customer.account_id,
                deleted_rep(customer, self.pipeline.label(customer.stage), tags),
                key=f"deleted:{event.customer_id}:{customer.deleted_at}",
                customer_id=event.customer_id,
            )
        return Reported(customer.account_id, event.customer_id, planned)

    async def undeliverable(self, event: Undeliverable) -> Reported:
        """A message in doubt is reported unless its echo proves it delivered before the alert
        goes out; one that surely failed is reported with a plain cause."""
        row = event.row
        async with self.db.transaction() as session:
            planned = await self._plan(session, row, event.reason, event.unsent)
        return Reported(row.account_id, row.customer_id, planned)

    async def in_doubt(
        self, session: AsyncSession, row: ScheduledMessage, reason: str, unsent: str = ""
    ) -> None:
        """Recovery found ``row``'s send interrupted: the alert is planned in recovery's own
        transaction, so a restart that then fails to log in cannot lose it."""
        await self._plan(session, row, reason, unsent)

    async def _plan(
        self, session: AsyncSession, row: ScheduledMessage, reason: str, unsent: str = ""
    ) -> int | None:
        customer = None if row.customer_id is None else await Customers(session).get(row.customer_id)
        return await self.console.alert(
            session,
            row.account_id,
            undeliverable(row, customer, reason, unsent),
            key=f"undeliverable:{row.idempotency_key}",
            customer_id=row.customer_id,
            unless_delivered=row.idempotency_key if DELIVERY_UNKNOWN in reason else None,
        )
