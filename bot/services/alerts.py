"""Alerts: things the rep must know now, sent to their console as ``alert``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from sqlmodel.ext.asyncio.session import AsyncSession

from bot.clock import Clock
from bot.config import Config
from bot.domain.hours import WorkingCalendar
from bot.services.messenger import Delivery, Messenger
from bot.services.outbox import Composed
from storage.db import Database
from storage.models import Customer, ScheduledMessage
from storage.repositories import Outbox, OutgoingLog

ALERT = "alert"


# an alert that could not go out (the account was offline) waits this long in the outbox
ALERT_VALID = timedelta(days=3)


class Alerts:
    def __init__(
        self,
        db: Database,
        clock: Clock,
        messenger: Messenger,
        console_of: Callable[[str], str],
        note_customer: Callable[[str, int], None],
        on_planned: Callable[[datetime], None],
    ) -> None:
        self.db = db
        self.clock = clock
        self.messenger = messenger
        self.console_of = console_of
        self.note_customer = note_customer
        self.on_planned = on_planned

    async def send(
        self,
        account_id: str,
        text: str,
        key: str,
        customer_id: int | None = None,
        *,
        unless_delivered: str | None = None,
    ) -> None:
        """``key`` makes the alert idempotent: the same situation is reported once. When the account
        is offline the alert waits in the outbox and goes out once it reconnects, unless the message
        keyed ``unless_delivered`` has meanwhile proved delivered (its echo came back)."""
        if customer_id is not None:
            self.note_customer(account_id, customer_id)
        full_key = f"{account_id}:{ALERT}:{key}"
        result = await self.messenger.send(
            account_id=account_id,
            conversation_id=self.console_of(account_id),
            text=text,
            kind=ALERT,
            key=full_key,
            customer_id=customer_id,
        )
        if result.delivery is Delivery.NOT_CONNECTED:
            await self._keep(account_id, text, full_key, unless_delivered)

    async def _keep(self, account_id: str, text: str, key: str, unless_delivered: str | None) -> None:
        now = self.clock.now()
        async with self.db.transaction() as session:
            await Outbox(session).plan(
                ScheduledMessage(
                    account_id=account_id,
                    customer_id=None,  # the alert must go out even when it reports a deleted customer
                    kind=ALERT,
                    sequence=ALERT,
                    step=key,
                    template="-",
                    context={"text": text, "unless_delivered": unless_delivered},
                    due_at=now,
                    not_after=now + ALERT_VALID,
                    status="pending",
                    idempotency_key=key,
                    created_at=now,
                    updated_at=now,
                )
            )
        self.on_planned(now)


class AlertComposer:
    """Sends an alert kept while the account was offline, as it was worded then."""

    def __init__(self, console_of: Callable[[str], str]) -> None:
        self.console_of = console_of

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        settled_by = row.context.get("unless_delivered")
        if settled_by:
            sent = await OutgoingLog(session).by_key(str(settled_by))
            if sent is not None and sent.status == "sent":
                return None  # the doubt this alert reports has been settled
        return Composed(self.console_of(row.account_id), str(row.context["text"]))


OWED = "owed"


class OwedReplyNudges:
    """Plans a console nudge for when a customer's message would become an owed reply; at send time
    it is dropped if the rep has written to the customer since."""

    def __init__(
        self,
        db: Database,
        clock: Clock,
        config: Config,
        console_of: Callable[[str], str],
        on_planned: Callable[[datetime], None],
    ) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self.console_of = console_of
        self.on_planned = on_planned

    async def customer_wrote(self, customer: Customer, message_id: str) -> None:
        if not self.config.digest.owed_nudge or customer.id is None:
            return
        now = self.clock.now()
        calendar = WorkingCalendar(
            self.config.account(customer.account_id).profile.working_hours, self.config.tz
        )
        due = calendar.next_open(now + timedelta(minutes=self.config.digest.owed_reply_minutes))
        async with self.db.transaction() as session:
            await Outbox(session).plan(
                ScheduledMessage(
                    account_id=customer.account_id,
                    customer_id=customer.id,
                    kind=OWED,
                    sequence=OWED,
                    step=message_id,
                    template="-",
                    context={"since": now.isoformat()},
                    due_at=due,
                    not_after=due + timedelta(hours=12),
                    status="pending",
                    idempotency_key=f"{customer.account_id}:{customer.id}:{OWED}:{message_id}",
                    created_at=now,
                    updated_at=now,
                )
            )
        self.on_planned(due)


class OwedReplyComposer:
    def __init__(self, console_of: Callable[[str], str], config: Config) -> None:
        self.console_of = console_of
        self.config = config

    async def compose(
        self, row: ScheduledMessage, customer: Customer | None, session: AsyncSession
    ) -> Composed | None:
        assert customer is not None
        since = datetime.fromisoformat(str(row.context["since"]))
        if customer.last_outbound_at is not None and customer.last_outbound_at >= since:
            return None  # the rep answered
        if customer.last_inbound_at is not None and customer.last_inbound_at > since:
            return None  # a later message has its own nudge
        waited = round((self.clock_now(row) - since).total_seconds() / 60)
        name = customer.remark or customer.display_name
        return Composed(
            self.console_of(row.account_id),
            f"【{name} #{customer.id}】的消息已等了 {waited} 分钟，还没有回复。",
            kind=ALERT,
        )

    @staticmethod
    def clock_now(row: ScheduledMessage) -> datetime:
        return row.claimed_at or row.due_at
